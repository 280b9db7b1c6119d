// The package gives the verdicts of `admission-webhook check` on the same fixture files: the
// seed's ServiceEntries, every violation class in tests/data/bad/, and the warnings.
import assert from 'node:assert/strict';
import { basename } from 'node:path';
import { describe, test } from 'node:test';

import { fixtures, nativeCheck, nativeCheckWith, policy, read, DATA } from './common.mjs';

// What is compared of each finding; `file` is not known to the package.
function fields(f, withDocument = true) {
  const out = {
    namespace: f.namespace,
    name: f.name,
    path: f.path,
    message: f.message,
    severity: f.severity,
    rule: f.rule,
    enforcedBy: f.enforcedBy,
    suggestedAddress: f.suggestedAddress ?? null,
  };
  if (withDocument) out.document = f.document;
  return out;
}

function assertSameVerdict(report, native, withDocument = true) {
  assert.notEqual(native.status, 2, `native checker failed: ${native.stderr}`);
  assert.equal(report.valid, native.status === 0, 'valid is exit status 0');
  const errors = native.report.findings.filter((f) => f.severity === 'error');
  const warnings = native.report.findings.filter((f) => f.severity === 'warning');
  assert.deepEqual(
    report.violations.map((f) => fields(f, withDocument)),
    errors.map((f) => fields(f, withDocument)),
  );
  assert.deepEqual(
    report.warnings.map((f) => fields(f, withDocument)),
    warnings.map((f) => fields(f, withDocument)),
  );
  assert.equal(report.checked, native.report.checked);
}

describe('the seed', () => {
  for (const path of fixtures('seed')) {
    test(`${basename(path)} is valid as natively`, () => {
      const report = policy.validate(read(path));
      const native = nativeCheck(path);
      assert.equal(native.status, 0);
      assert.equal(report.valid, true);
      assert.deepEqual(report.violations, []);
      assertSameVerdict(report, native);
    });
  }

  test('the three entries in one text are valid together as natively', () => {
    const paths = fixtures('seed');
    const report = policy.validate(paths.map(read).join('\n---\n'));
    assert.equal(report.checked, 3);
    assertSameVerdict(report, nativeCheck(...paths), false);
  });
});

describe('every violation class', () => {
  const bad = fixtures('bad');
  test('there are fixtures', () => assert.ok(bad.length >= 9, `${bad.length} fixtures`));
  for (const path of bad) {
    test(`${basename(path)} is invalid with the native findings`, () => {
      const report = policy.validate(read(path));
      const native = nativeCheck(path);
      assertSameVerdict(report, native);
      assert.equal(report.valid, false);
      assert.ok(report.violations.length > 0);
    });
  }

  test('duplicate-and-wrong-port.yaml after the seed gets the duplicate and a suggestion', () => {
    const seed = `${DATA}/seed/serviceentry-direct.yaml`;
    const bad = `${DATA}/bad/duplicate-and-wrong-port.yaml`;
    const report = policy.validate(`${read(seed)}\n---\n${read(bad)}`);
    assertSameVerdict(report, nativeCheck(seed, bad), false);
    const duplicate = report.violations.find((v) => v.rule === 'duplicate-address');
    assert.equal(duplicate.path, 'spec.addresses[0]');
    assert.equal(duplicate.suggestedAddress, '127.255.0.1');
    assert.match(duplicate.message, /already used by ServiceEntry foo\/httpbin-bar/);
  });
});

describe('against existing entries', () => {
  const seed = `${DATA}/seed/serviceentry-direct.yaml`;
  for (const path of [...fixtures('bad'), ...fixtures('warn'), ...fixtures('seed')]) {
    test(`${basename(path)} with the seed existing gives the native verdict`, () => {
      const report = policy.validate(read(path), { existing: read(seed) });
      assertSameVerdict(report, nativeCheckWith(['--existing', seed], path));
    });
  }

  test('a broken existing text is a parse violation of the option', () => {
    const report = policy.validate(read(seed), { existing: read(`${DATA}/broken.yaml`) });
    assert.equal(report.valid, false);
    assert.equal(report.violations[0].path, 'options.existing');
    assert.equal(report.violations[0].rule, 'parse');
    assert.match(report.violations[0].message, /^existing ServiceEntries: line \d+ /);
  });
});

describe('warnings', () => {
  for (const path of fixtures('warn')) {
    test(`${basename(path)} has the native warnings`, () => {
      const report = policy.validate(read(path));
      const native = nativeCheck(path);
      assertSameVerdict(report, native);
      assert.ok(report.warnings.length > 0);
    });
  }
});

describe('text that is not YAML', () => {
  test('broken.yaml is a parse violation naming the line the native checker names', () => {
    const path = `${DATA}/broken.yaml`;
    const report = policy.validate(read(path));
    const native = nativeCheck(path);
    assert.equal(native.status, 2);
    assert.equal(report.valid, false);
    assert.equal(report.violations.length, 1);
    const [violation] = report.violations;
    assert.equal(violation.rule, 'parse');
    assert.equal(typeof violation.line, 'number');
    assert.ok(violation.message.startsWith(`line ${violation.line} `), violation.message);
    // Natively: "admission-webhook: <file>: <the same message>".
    assert.equal(native.stderr.trim(), `admission-webhook: ${path}: ${violation.message}`);
  });
});
