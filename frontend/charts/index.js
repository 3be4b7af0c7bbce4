// The board: every chart module, in display order. Adding, removing or replacing a chart is one
// line here; the dashboard builds the cards, the series keeps what the charts read, and the
// scheduler redraws them, all from this table.
import { ActsChart } from "./acts.js";
import { BoundaryChart } from "./boundary.js";
import { ChainChart } from "./chain.js";
import { ClipChart } from "./clip.js";
import { DriftChart } from "./drift.js";
import { HeatmapChart } from "./heatmap.js";
import { HistChart } from "./hist.js";
import { HmapChart } from "./hmap.js";
import { LossChart } from "./loss.js";
import { ProfileChart } from "./profile.js";
import { RatioChart } from "./ratio.js";
import { SlopeChart } from "./slope.js";
import { ValChart } from "./val.js";
import { WeightsChart } from "./weights.js";
import { ZmapChart } from "./zmap.js";
import { GateChart } from "./gates.js";
import { TimeHeatmapChart } from "./timeheatmap.js";
import { TimeProfileChart } from "./timeprofile.js";
import { ChannelsChart } from "./channels.js";
import { SppChart } from "./spp.js";
import { SaliencyChart } from "./saliency.js";
import { PlaneChart } from "./plane.js";
import { LogitGradChart } from "./logitgrad.js";
import { DProfileChart, GProfileChart } from "./netprofile.js";
import { DHeatmapChart, GHeatmapChart } from "./netheatmap.js";
import { OddsChart } from "./odds.js";
import { CriticGradChart } from "./critic.js";
import { ModesChart } from "./modes.js";

// Rows of the 6-column grid: spans 3+3, 3+3, then 2+2+2.
export const CHARTS = [
  PlaneChart, LogitGradChart,  // the GAN's (views.plane; g_logit_grad), as are the next three rows
  GProfileChart, DProfileChart, GHeatmapChart, DHeatmapChart,
  OddsChart, CriticGradChart, ModesChart,
  TimeProfileChart,  // models that emit time_delta_norm (spec.requires), as do TimeHeatmapChart and GateChart's
  TimeHeatmapChart, GateChart,
  ProfileChart, HeatmapChart,
  SppChart, ChannelsChart,  // models that emit spp_var / channel_grad_norm (the CNN)
  SaliencyChart,
  ChainChart, SlopeChart,
  ZmapChart, ActsChart, HmapChart,
  LossChart, ValChart, ClipChart,
  WeightsChart, DriftChart, RatioChart,
  HistChart, BoundaryChart,
];
