// Which diagnosis reads a model's statistics: the one its family's views.diagnosis names
// (models.js): "layers" (diagnosis.js, along the layers), "time" (timediagnosis.js, along the
// time steps of the top layer) or "game" (gamediagnosis.js, a GAN's two networks).
import { diagnose } from "./diagnosis.js";
import { diagnoseTime } from "./timediagnosis.js";
import { diagnoseGame } from "./gamediagnosis.js";
import { layerNamesOf, viewsOf } from "./models.js";

const BY_VIEW = {
  layers: (meta, config, s) => diagnose(config, s, layerNamesOf(meta, config)),  // layers named where the family names them
  time: (meta, config, s) => diagnoseTime(config, s, meta),
  game: (meta, config, s) => diagnoseGame(config, s, meta),
};

/** The diagnosis of `s`, the latest record of a run with `config`, by its model's family's view. */
export function diagnoseFor(meta, config, s) {
  const read = BY_VIEW[viewsOf(meta, config.model).diagnosis] || BY_VIEW.layers;
  return read(meta, config, s);
}
