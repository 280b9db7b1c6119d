// The package's API: options, values it returns instead of throwing, and nextFreeAddress.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { DATA, policy, read } from './common.mjs';

const SEED = read(`${DATA}/seed/serviceentry-direct.yaml`);

describe('validate', () => {
  test('JSON and kind: List are read', () => {
    const list = JSON.stringify({
      apiVersion: 'v1',
      kind: 'List',
      items: [
        {
          apiVersion: 'networking.istio.io/v1',
          kind: 'ServiceEntry',
          metadata: { name: 'a', namespace: 'foo' },
          spec: {
            hosts: ['a.foo.global'],
            location: 'MESH_INTERNAL',
            resolution: 'DNS',
            ports: [{ name: 'http1', number: 8000, protocol: 'http' }],
            addresses: ['127.255.0.2'],
            endpoints: [{ address: '198.18.2.1', ports: { http1: 15443 } }],
          },
        },
      ],
    });
    const report = policy.validate(list);
    assert.deepEqual(report, { valid: true, checked: 1, violations: [], warnings: [] });
  });

  test('a gateway port option allows a NodePort', () => {
    const nodePort = SEED.replace('http1: 15443', 'http1: 31443');
    assert.equal(policy.validate(nodePort).valid, false);
    assert.equal(policy.validate(nodePort, { gatewayPorts: [15443, 31443] }).valid, true);
  });

  test('another domain suffix leaves .global hosts to Istio rules only', () => {
    const bad = SEED.replace('http1: 15443', 'http1: 8000');
    assert.equal(policy.validate(bad, { domainSuffix: 'global' }).valid, false);
    assert.equal(policy.validate(bad, { domainSuffix: 'remote' }).valid, true);
  });

  test('VIP ranges decide where an address warns', () => {
    assert.equal(policy.validate(SEED).warnings.length, 0);
    const warned = policy.validate(SEED, { vipRanges: ['240.0.0.0/16'] });
    assert.equal(warned.valid, true);
    assert.equal(warned.warnings[0].path, 'spec.addresses[0]');
  });

  for (const [what, options, mention] of [
    ['a bad suffix', { domainSuffix: 'a..b' }, '"a..b"'],
    ['a bad range', { vipRanges: ['10.0.0.0/33'] }, '"10.0.0.0/33"'],
    ['port 0', { gatewayPorts: [0] }, 'port 0'],
    ['a port past 65535', { gatewayPorts: [70000] }, '70000'],
    ['a port as text', { gatewayPorts: ['https'] }, 'https'],
    ['an unknown option', { domainSufix: 'global' }, 'domainSufix'],
    ['options that are a string', 'global', 'expected an object'],
  ]) {
    test(`${what} is an options violation, not a throw`, () => {
      const report = policy.validate(SEED, options);
      assert.equal(report.valid, false);
      assert.equal(report.violations.length, 1);
      assert.equal(report.violations[0].rule, 'options');
      assert.ok(report.violations[0].message.startsWith('invalid options: '));
      assert.ok(report.violations[0].message.includes(mention), report.violations[0].message);
    });
  }

  test('options that are not JSON are a violation, not a throw', () => {
    const circular = { domainSuffix: 'global' };
    circular.self = circular;
    for (const options of [circular, { gatewayPorts: [15443n] }]) {
      const report = policy.validate(SEED, options);
      assert.equal(report.violations[0].rule, 'options');
      assert.match(report.violations[0].message, /not representable as JSON/);
    }
  });

  test('input that is not a string is a violation, not a throw', () => {
    for (const input of [undefined, null, 42, {}, ['x']]) {
      const report = policy.validate(input);
      assert.equal(report.valid, false);
      assert.equal(report.violations[0].rule, 'input');
    }
  });

  test('garbage never throws', () => {
    for (const text of ['', '---', ': :', '[1, 2]', '"x"', '{"a":', '\u0000', 'a: *b', '- [[[[']) {
      const report = policy.validate(text);
      assert.equal(typeof report.valid, 'boolean', JSON.stringify(text));
    }
  });

  test('deep nesting is a parse violation, not a stack overflow', () => {
    for (const text of ['['.repeat(100_000), '{"a":'.repeat(50_000), `${'- '.repeat(5_000)}x`]) {
      const report = policy.validate(text);
      assert.equal(report.valid, false);
      assert.equal(report.violations[0].rule, 'parse');
      // go-yaml's limit, as kubectl reports it.
      assert.match(report.violations[0].message, /exceeded max depth of 1000/);
    }
  });

  test('an alias bomb is a parse violation', () => {
    let yaml = 'a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n';
    for (let i = 1; i < 9; i += 1) {
      yaml += `a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(', ')}]\n`;
    }
    const report = policy.validate(yaml);
    assert.equal(report.valid, false);
    assert.match(report.violations[0].message, /excessive aliasing/);
  });

  test('two thousand entries are checked against each other', () => {
    const entries = Array.from({ length: 2_000 }, (_, i) => SEED
      .replace('name: httpbin-bar', `name: httpbin-${i}`)
      .replace('httpbin.bar.global', `httpbin${i}.bar.global`)
      .replace('127.255.0.2', `127.255.${8 + Math.floor(i / 250)}.${(i % 250) + 1}`));
    entries.push(SEED.replace('name: httpbin-bar', 'name: late'));
    entries.push(SEED.replace('name: httpbin-bar', 'name: later'));
    const report = policy.validate(entries.join('\n---\n'));
    assert.equal(report.checked, 2_002);
    // Only the last entry reuses a host and an address (the one before it took
    // httpbin.bar.global and 127.255.0.2 first).
    assert.deepEqual(report.violations.map((v) => [v.name, v.rule, v.suggestedAddress]),
      [['later', 'duplicate-host', null], ['later', 'duplicate-address', '127.255.0.1']]);
  });
});

describe('nextFreeAddress', () => {
  test('skips the addresses of the entries in the text', () => {
    assert.deepEqual(policy.nextFreeAddress(SEED, '127.255.0.2/31'), {
      address: '127.255.0.3',
      range: '127.255.0.2/31',
      error: null,
    });
  });

  test('defaults to 127.255.0.0/16', () => {
    assert.equal(policy.nextFreeAddress(SEED).address, '127.255.0.1');
  });

  test('a full range, a bad range and bad text are error values', () => {
    assert.equal(policy.nextFreeAddress(SEED, '127.255.0.2/32').error,
      'no free address is left in 127.255.0.2/32');
    assert.match(policy.nextFreeAddress(SEED, 'nope').error, /"nope" is not a CIDR/);
    assert.match(policy.nextFreeAddress('a: [', '240.0.0.0/16').error, /^line \d+/);
    assert.match(policy.nextFreeAddress(7).error, /expected the text/);
    assert.match(policy.nextFreeAddress(SEED, 42).error, /expected the range as a CIDR string/);
    assert.equal(policy.nextFreeAddress(SEED, null).address, '127.255.0.1');
  });
});
