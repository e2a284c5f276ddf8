/* global module, __dirname */
/**
 * pm2 process file for an app that keeps its settings in `backend/.env` (DATABASE_URL, BACKUP_DIR or
 * AI_WORKSPACE, GOOGLE_APPLICATION_CREDENTIALS), as the Python module's scheduler did: copy this file into the
 * app's backend/ folder, next to that .env, with litekeep installed there (`npm install litekeep` in backend/):
 *
 *   cd /srv/myapp/backend && pm2 start ecosystem.config.cjs && pm2 save
 *
 * The daemon runs in backend/, so it reads that .env unchanged, and relative paths in it (sqlite:///data/app.db,
 * ./google_user_credentials.json) mean what they meant to the app.
 */
module.exports = {
  apps: [
    {
      name: 'litekeep',
      cwd: __dirname,
      script: 'node_modules/litekeep/dist/cli/main.js',
      args: 'daemon',
      exec_mode: 'fork',
      instances: 1,
      autorestart: true,
      restart_delay: 30000,
      stop_exit_codes: [0],
      // A running backup may finish for up to `stopTimeout` (default 10m) after the first signal.
      kill_signal: 'SIGTERM',
      kill_timeout: 660000,
      treekill: false,
      time: false,
      env: { NODE_ENV: 'production' },
    },
  ],
};
