// Shared set-up of the Node and browser tests: where the repository, the built package and
// the fixtures are, and how to run the native checker on the same files.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const DATA = join(ROOT, 'tests/data');
export const WEB_DIST = join(ROOT, 'dist/web');

// The Node package built by `make js` (CommonJS, as wasm-bindgen's nodejs target writes it).
export const policy = createRequire(import.meta.url)(join(ROOT, 'dist/js'));

const NATIVE = process.env.ADMISSION_WEBHOOK ?? join(ROOT, 'target/debug/admission-webhook');

/** The YAML files of one fixture folder, by name. */
export function fixtures(folder) {
  return readdirSync(join(DATA, folder))
    .filter((name) => name.endsWith('.yaml'))
    .sort()
    .map((name) => join(DATA, folder, name));
}

export function read(path) {
  return readFileSync(path, 'utf8');
}

/** `admission-webhook check --format json PATHS...`: its exit status, report and stderr. */
export function nativeCheck(...paths) {
  return nativeCheckWith([], ...paths);
}

/** As `nativeCheck`, with more arguments (such as `--existing PATH`) before the paths. */
export function nativeCheckWith(args, ...paths) {
  const run = spawnSync(NATIVE, ['check', '--format', 'json', ...args, ...paths], {
    encoding: 'utf8',
  });
  if (run.error) throw run.error;
  return {
    status: run.status,
    report: run.status === 2 ? null : JSON.parse(run.stdout),
    stderr: run.stderr,
  };
}
