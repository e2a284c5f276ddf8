import { afterAll } from 'vitest';
import { removeTempDirs } from '../helpers/temp.js';

// Registered before any test file's own hooks, so it runs after them: a test's cleanups (unmounting a tmpfs,
// stopping a server) come first, then its folders go.
afterAll(removeTempDirs);
