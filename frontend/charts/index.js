// The board: every chart module, in display order. Adding, removing or replacing a chart is one
// line here; the dashboard builds the cards, the series keeps what the charts read, and the
// scheduler redraws them, all from this table.
import { ActsChart } from "./acts.js";
import { BoundaryChart } from "./boundary.js";
import { ClipChart } from "./clip.js";
import { HeatmapChart } from "./heatmap.js";
import { HistChart } from "./hist.js";
import { LossChart } from "./loss.js";
import { ProfileChart } from "./profile.js";
import { RatioChart } from "./ratio.js";
import { GateChart } from "./gates.js";
import { TimeHeatmapChart } from "./timeheatmap.js";
import { TimeProfileChart } from "./timeprofile.js";

export const CHARTS = [
  TimeProfileChart,  // recurrent models only (spec.models), as are TimeHeatmapChart and GateChart
  TimeHeatmapChart,
  GateChart,
  ProfileChart,
  HeatmapChart,
  LossChart,
  ClipChart,
  RatioChart,
  ActsChart,
  HistChart,
  BoundaryChart,
];
