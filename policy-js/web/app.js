// The checker page: runs the policy core (compiled to WebAssembly) on the text as it changes
// and lists each violation with its field path. No framework, no network beyond this folder.
import init, { validate } from './policy_js.js';

const input = document.getElementById('input');
const form = document.getElementById('form');
const file = document.getElementById('file');
const example = document.getElementById('example');
const summary = document.getElementById('summary');
const findings = document.getElementById('findings');
const optionFields = {
  domainSuffix: document.getElementById('domain-suffix'),
  gatewayPorts: document.getElementById('gateway-ports'),
  vipRanges: document.getElementById('vip-ranges'),
  existing: document.getElementById('existing'),
};
const details = document.querySelector('details');

let ready = false;
let timer = 0;

function list(text) {
  return text.split(/[\s,]+/).filter(Boolean);
}

// Numbers where they are numbers; anything else is passed on so the core names the bad value.
function options() {
  const out = {};
  const suffix = optionFields.domainSuffix.value.trim();
  if (suffix) out.domainSuffix = suffix;
  const ports = list(optionFields.gatewayPorts.value);
  if (ports.length) out.gatewayPorts = ports.map((p) => (/^\d+$/.test(p) ? Number(p) : p));
  const ranges = list(optionFields.vipRanges.value);
  if (ranges.length) out.vipRanges = ranges;
  if (optionFields.existing.value.trim()) out.existing = optionFields.existing.value;
  return out;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

// Selects line `line` (1-based) of a text area so the cursor lands on a parse error.
function goToLine(area, line) {
  if (area === optionFields.existing) details.open = true;
  const lines = area.value.split('\n');
  const start = lines.slice(0, line - 1).reduce((sum, l) => sum + l.length + 1, 0);
  const end = start + (lines[line - 1] ?? '').length;
  area.focus();
  area.setSelectionRange(start, end);
}

function renderFinding(v) {
  const where = v.namespace || v.name
    ? `${v.namespace}/${v.name}${v.document ? ` (document ${v.document})` : ''}`
    : '';
  const head = el('div', { className: 'head' },
    el('span', { className: 'badge', textContent: v.severity }),
    el('code', { className: 'path', textContent: v.path || (v.rule === 'parse' ? 'text' : v.rule) }));
  if (where) head.append(el('span', { className: 'object', textContent: where }));
  if (v.enforcedBy) {
    const by = { 'api-server': 'API server (CRD)', istio: "Istio's webhook", globalmesh: 'globalmesh' };
    head.append(el('span', { className: 'enforcer', textContent: by[v.enforcedBy] || v.enforcedBy }));
  }
  const item = el('li', { className: `finding ${v.severity}` }, head,
    el('p', { className: 'message', textContent: v.message }));
  item.dataset.rule = v.rule;
  item.dataset.enforcedBy = v.enforcedBy;
  item.dataset.path = v.path;
  if (v.suggestedAddress) {
    item.append(el('p', { className: 'suggestion' },
      'Suggested free address: ', el('code', { textContent: v.suggestedAddress })));
  }
  if (v.line) {
    const button = el('button', {
      type: 'button', className: 'goto', textContent: `Go to line ${v.line}`,
    });
    const area = v.path === 'options.existing' ? optionFields.existing : input;
    button.addEventListener('click', () => goToLine(area, v.line));
    item.append(button);
  }
  return item;
}

function check() {
  clearTimeout(timer);
  if (!ready) return;
  const text = input.value;
  findings.replaceChildren();
  if (!text.trim()) {
    summary.className = 'summary';
    summary.textContent = 'Paste a ServiceEntry to check it.';
    return;
  }
  let report;
  try {
    report = validate(text, options());
  } catch (error) {
    // validate returns its errors as values; this is a fault in the page or the module.
    summary.className = 'summary bad';
    summary.textContent = `The checker failed: ${error}`;
    return;
  }
  const all = [...report.violations, ...report.warnings];
  findings.replaceChildren(...all.map(renderFinding));
  const warnings = report.warnings.length
    ? `, ${plural(report.warnings.length, 'warning', 'warnings')}` : '';
  if (!report.valid) {
    summary.className = 'summary bad';
    summary.textContent = `✗ Invalid: ${plural(report.violations.length, 'violation', 'violations')}${warnings}.`;
  } else if (report.checked === 0) {
    summary.className = 'summary';
    summary.textContent = 'No ServiceEntry found in the text (objects of other kinds are skipped).';
  } else {
    summary.className = 'summary ok';
    summary.textContent = `✓ Valid: ${plural(report.checked, 'ServiceEntry', 'ServiceEntries')}, no violations${warnings}.`;
  }
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(check, 250);
}

async function load(blob) {
  input.value = await blob.text();
  check();
}

input.addEventListener('input', schedule);
for (const field of Object.values(optionFields)) field.addEventListener('input', schedule);
form.addEventListener('submit', (event) => { event.preventDefault(); check(); });
input.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) { event.preventDefault(); check(); }
});
file.addEventListener('change', () => { if (file.files[0]) load(file.files[0]); });
input.addEventListener('dragover', (event) => { event.preventDefault(); input.classList.add('dragging'); });
input.addEventListener('dragleave', () => input.classList.remove('dragging'));
input.addEventListener('drop', (event) => {
  input.classList.remove('dragging');
  const dropped = event.dataTransfer?.files?.[0];
  if (dropped) { event.preventDefault(); load(dropped); }
});
example.addEventListener('click', async () => {
  const response = await fetch('example.yaml');
  input.value = await response.text();
  check();
});

try {
  await init();
  ready = true;
  document.body.dataset.ready = 'true';
  check();
} catch (error) {
  summary.className = 'summary bad';
  summary.textContent = `The checker could not be loaded: ${error}`;
}
