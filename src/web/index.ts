export { httpAccessOf, MIN_TOKEN_LENGTH, type HttpAccess } from './access.js';
export { collectStatus, activityView, type StatusSource } from './collect.js';
export { renderPage, ASSET_PATHS } from './render.js';
export { scatterChart, niceCeiling, type ChartPoint, type ChartOptions } from './chart.js';
export { statusPageRoutes, type StatusPageOptions, type BackupNowOutcome } from './routes.js';
export * from './document.js';
