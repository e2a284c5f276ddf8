/* global module, __dirname */
/**
 * pm2 process file for the litekeep daemon: `pm2 start ecosystem.config.cjs && pm2 save`.
 * Run it from the folder that holds litekeep.yml / .env (or set LITEKEEP_CWD).
 */
module.exports = {
  apps: [
    {
      name: 'litekeep',
      // The CLI of the package this file ships in; LITEKEEP_BIN points elsewhere (e.g. a global install).
      script: process.env.LITEKEEP_BIN || `${__dirname}/../dist/cli/main.js`,
      args: 'daemon',
      cwd: process.env.LITEKEEP_CWD || process.cwd(),
      // One daemon: the schedule, catch-up and lock assume a single instance.
      exec_mode: 'fork',
      instances: 1,
      watch: false,
      autorestart: true,
      restart_delay: 30000,
      max_restarts: 10,
      min_uptime: '30s',
      // A clean stop (exit 0 after SIGTERM) is not a crash to restart from.
      stop_exit_codes: [0],
      // The first signal lets a running backup finish for up to `stopTimeout` (default 10m); pm2 must wait
      // longer than that before its SIGKILL. pm2 sends SIGINT by default; SIGTERM matches systemd.
      kill_signal: 'SIGTERM',
      kill_timeout: 660000,
      // Signal only the daemon, not its snapshot child process, so the first signal is graceful.
      treekill: false,
      // Log lines are JSON with their own timestamps.
      time: false,
      env: { NODE_ENV: 'production' },
    },
  ],
};
