// Page name (as in /console/<page> and the edgegate-page meta tag) → page module.
import audit from "./page-audit.js";
import breakers from "./page-breakers.js";
import escalations from "./page-escalations.js";
import models from "./page-models.js";
import overview from "./page-overview.js";
import rollouts from "./page-rollouts.js";
import tasks from "./page-tasks.js";
import tenants from "./page-tenants.js";

export const PAGES = { overview, models, rollouts, tenants, tasks, escalations, breakers, audit };
