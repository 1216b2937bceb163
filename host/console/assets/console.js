// weir's console: one page, plain JavaScript, SVG drawn by hand. Every datum
// comes from weir's API under the caller's key; nothing is written with
// innerHTML, so names from a manifest or a record can never become markup.
'use strict';

const SVG = 'http://www.w3.org/2000/svg';
const WINDOW_SECS = 10;
const COLOURS = ['#2563eb', '#db2777', '#16a34a', '#ea580c', '#7c3aed', '#0891b2', '#ca8a04', '#4b5563'];
const state = { key: sessionStorage.getItem('weir-key') || '', layouts: null, live: null, stream: null, retry: null };

// ---- small helpers ---------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === 'onclick' || name === 'onsubmit') node[name] = value;
    // Through the CSSOM: the page's policy refuses style attributes.
    else if (name === 'style') Object.assign(node.style, value);
    else if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function headers() {
  return state.key ? { Authorization: 'Bearer ' + state.key } : {};
}

async function api(path) {
  const response = await fetch(path, { headers: headers() });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.error || response.status + ' ' + response.statusText);
    error.status = response.status;
    throw error;
  }
  return body;
}

function micros(us) {
  if (us === null || us === undefined) return '–';
  if (us >= 1e6) return (us / 1e6).toFixed(2) + ' s';
  if (us >= 1e3) return (us / 1e3).toFixed(2) + ' ms';
  return Math.round(us) + ' µs';
}

function number(value, digits) {
  if (value === null || value === undefined) return '–';
  if (value !== 0 && Math.abs(value) < 0.001) return value.toExponential(2);
  return value.toFixed(digits === undefined ? 2 : digits);
}

function time(ms) {
  return new Date(ms).toLocaleString();
}

function show(view, ...content) {
  const main = document.getElementById('view');
  main.dataset.view = view;
  main.replaceChildren(...content);
  for (const link of document.querySelectorAll('[data-nav]')) {
    link.classList.toggle('active', view.startsWith(link.dataset.nav.replace(/s$/, '')));
  }
}

function failure(error) {
  const hint = error.status === 401 ? ' Enter an API key above (a key with `status`, and `records:read` for invocations).'
    : error.status === 403 ? ' This key lacks the scope this view needs.' : '';
  return el('p', { class: 'error', 'data-error': error.status || 'network' }, error.message + hint);
}

async function layouts() {
  if (!state.layouts) state.layouts = await api('/v2/console/pipelines');
  return state.layouts;
}

// ---- the graph -------------------------------------------------------------

function edgeId(edge) {
  return edge.from + '->' + edge.to;
}

function pathOf(points) {
  let d = 'M' + points[0][0] + ',' + points[0][1];
  for (let i = 1; i < points.length; i++) {
    const [x0, y0] = points[i - 1];
    const [x1, y1] = points[i];
    const mid = (x0 + x1) / 2;
    d += ' C' + mid + ',' + y0 + ' ' + mid + ',' + y1 + ' ' + x1 + ',' + y1;
  }
  return d;
}

// Draws a laid-out pipeline; `labels` may give each edge's label text.
function drawGraph(layout, labels) {
  const graph = svg('svg', {
    class: 'graph', 'data-pipeline': layout.pipeline, width: layout.width, height: layout.height + 30,
    viewBox: '0 0 ' + layout.width + ' ' + (layout.height + 30),
  });
  for (const edge of layout.edges) {
    const id = edgeId(edge);
    graph.append(svg('path', { class: 'edge' + (edge.sensitive ? ' sensitive' : ''), d: pathOf(edge.points), 'data-edge': id }));
    // Just before the edge's own port on its target: ports are spread, so labels are too.
    const [x1, y1] = edge.points[edge.points.length - 1];
    const text = (labels && labels[id]) || edge.tensors.join(', ');
    graph.append(svg('text', { class: 'edge-label', x: x1 - 6, y: y1 - 4, 'text-anchor': 'end', 'data-edge-label': id },
      svg('tspan', { 'data-field': 'tensors' }, text), svg('tspan', { 'data-field': 'rate' }, '')));
  }
  for (const node of layout.nodes) {
    const g = svg('g', { class: 'node ' + node.kind, 'data-node': node.id, transform: 'translate(' + node.x + ',' + node.y + ')' });
    g.append(svg('rect', { width: node.width, height: node.height }));
    const subtitle = node.kind === 'step' ? node.component + (node.models && node.models.length ? ' · ' + node.models.join(', ') : '') : node.kind;
    g.append(svg('text', { class: 'title', x: 8, y: 15 }, node.name));
    g.append(svg('text', { class: 'muted', x: 8, y: 29 }, subtitle));
    const live = svg('text', { class: 'live', 'data-field': 'live' });
    for (let line = 0; line < 3; line++) live.append(svg('tspan', { x: 8, y: 46 + 13 * line }, ''));
    g.append(live);
    g.append(svg('title', {}, node.id));
    graph.append(g);
  }
  return graph;
}

// ---- live figures ----------------------------------------------------------

function setLines(text, lines) {
  text.querySelectorAll('tspan').forEach((span, i) => { span.textContent = lines[i] || ''; });
}

function figuresText(f) {
  return f.per_second.toFixed(1) + '/s p50 ' + micros(f.p50_us) + ' p99 ' + micros(f.p99_us) + ' err ' + (100 * f.error_rate).toFixed(0) + '%';
}

function applyLive(snapshot) {
  state.live = snapshot;
  document.getElementById('window').textContent = snapshot.window_secs;
  for (const pipeline of snapshot.pipelines) {
    const graph = document.querySelector('svg.graph[data-pipeline="' + CSS.escape(pipeline.pipeline) + '"][data-live]');
    const summary = document.querySelector('[data-summary="' + CSS.escape(pipeline.pipeline) + '"]');
    if (summary) {
      const f = pipeline.invocations;
      summary.textContent = f.total_calls + ' calls · ' + f.total_errors + ' failed · ' + figuresText(f) +
        ' · CPU ' + micros(f.cpu_us_per_call) + '/call · ' + number(f.energy_j_per_call, 4) + ' J/call';
      summary.dataset.calls = f.total_calls;
    }
    const errors = document.querySelector('[data-errors="' + CSS.escape(pipeline.pipeline) + '"]');
    if (errors) {
      errors.replaceChildren(...pipeline.steps.filter((step) => step.last_error && step.error_rate > 0).map((step) =>
        el('p', { class: 'error', 'data-step-error': step.step }, step.step + ' failed at ' + new Date(step.last_error.unix_ms).toLocaleTimeString() + ': ' + step.last_error.message)));
    }
    if (!graph) continue;
    for (const step of pipeline.steps) {
      const node = graph.querySelector('[data-node="' + CSS.escape(step.node) + '"]');
      if (!node) continue;
      node.dataset.calls = step.total_calls;
      node.dataset.errors = step.total_errors;
      setLines(node.querySelector('[data-field=live]'), [
        step.total_calls + ' calls · ' + step.per_second.toFixed(1) + '/s · err ' + (100 * step.error_rate).toFixed(0) + '%',
        'p50 ' + micros(step.p50_us) + ' · p99 ' + micros(step.p99_us),
        'cold ' + step.total_cold_starts + ' · CPU ' + micros(step.cpu_us_per_call) + ' · ' + number(step.energy_j_per_call, 4) + ' J']);
      const failing = step.last_error && step.error_rate > 0;
      node.classList.toggle('failing', Boolean(failing));
      node.querySelector('title').textContent = step.node + (step.last_error ? '\nlast error: ' + step.last_error.message : '');
    }
    for (const edge of pipeline.edges) {
      const id = edge.from + '->' + edge.to;
      const path = graph.querySelector('[data-edge="' + CSS.escape(id) + '"]');
      const label = graph.querySelector('[data-edge-label="' + CSS.escape(id) + '"] [data-field=rate]');
      if (path) path.classList.toggle('busy', edge.per_second > 0);
      if (label) {
        label.textContent = ' · ' + edge.per_second.toFixed(1) + '/s';
        label.parentNode.dataset.calls = edge.total_calls;
      }
    }
  }
}

// Server-sent events read through fetch, so the key goes in a header.
async function stream() {
  const badge = document.getElementById('live-state');
  const controller = new AbortController();
  state.stream = controller;
  try {
    const response = await fetch('/v2/console/events?window=' + WINDOW_SECS, { headers: headers(), signal: controller.signal });
    if (response.status === 401 || response.status === 403) {
      // No use retrying with the same key: wait for another one.
      badge.textContent = 'no live figures: ' + (response.status === 401 ? 'needs a key' : 'needs the status scope');
      badge.className = 'badge off';
      return;
    }
    if (!response.ok) throw new Error('live figures: ' + response.status);
    badge.textContent = 'live';
    badge.className = 'badge on';
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const message = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = message.split('\n').filter((line) => line.startsWith('data:')).map((line) => line.slice(5)).join('\n');
        if (message.includes('event: live') && data) applyLive(JSON.parse(data));
      }
    }
  } catch (error) {
    if (controller.signal.aborted) return;
  }
  badge.textContent = 'offline';
  badge.className = 'badge off';
  if (state.stream === controller) state.retry = setTimeout(stream, 2000);
}

function restartStream() {
  clearTimeout(state.retry);
  if (state.stream) state.stream.abort();
  state.stream = null;
  stream();
}

// ---- views -----------------------------------------------------------------

async function pipelinesView() {
  const all = await layouts();
  const cards = all.map((layout) => {
    const graph = drawGraph(layout);
    graph.dataset.live = '';
    return el('section', { class: 'card', 'data-card': layout.pipeline },
      el('h2', {}, layout.pipeline),
      layout.description ? el('p', { class: 'muted' }, layout.description) : null,
      el('p', { 'data-summary': layout.pipeline }, 'no calls yet'),
      el('div', { 'data-errors': layout.pipeline }),
      graph);
  });
  show('pipelines', ...cards);
  if (state.live) applyLive(state.live);
}

function chart(title, series, field, unit) {
  const width = 420;
  const height = 160;
  const pad = 36;
  const points = series.flatMap((s) => s.points);
  const chartSvg = svg('svg', { class: 'chart', width, height, 'data-chart': field });
  chartSvg.append(svg('text', { x: pad, y: 12 }, title + ' (' + unit + ' per 10 s)'));
  chartSvg.append(svg('line', { class: 'axis', x1: pad, y1: height - pad, x2: width - 8, y2: height - pad }));
  chartSvg.append(svg('line', { class: 'axis', x1: pad, y1: 20, x2: pad, y2: height - pad }));
  if (points.length === 0) {
    chartSvg.append(svg('text', { x: pad + 10, y: height / 2 }, 'no calls in the last hour'));
    return chartSvg;
  }
  const t0 = Math.min(...points.map((p) => p.unix_s));
  const t1 = Math.max(...points.map((p) => p.unix_s), t0 + 10);
  const max = Math.max(...points.map((p) => p[field]), 1e-12);
  chartSvg.append(svg('text', { x: 2, y: 26 }, number(max, 3)));
  series.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const coords = s.points.map((p) => [pad + ((p.unix_s - t0) / (t1 - t0)) * (width - pad - 10), height - pad - (p[field] / max) * (height - pad - 24)]);
    chartSvg.append(svg('polyline', { points: coords.map(([x, y]) => x.toFixed(1) + ',' + y.toFixed(1)).join(' '), stroke: colour, 'data-series': s.name }));
    // A dot per slot: one slot alone still shows.
    for (const [x, y] of coords) chartSvg.append(svg('circle', { cx: x.toFixed(1), cy: y.toFixed(1), r: 2.5, fill: colour }));
  });
  chartSvg.append(svg('text', { x: pad, y: height - pad + 16 }, new Date(t0 * 1000).toLocaleTimeString()));
  chartSvg.append(svg('text', { x: width - 90, y: height - pad + 16 }, new Date(t1 * 1000).toLocaleTimeString()));
  return chartSvg;
}

async function receiptsView() {
  const history = await api('/v2/console/receipts');
  const cards = history.pipelines.map((p) => {
    // The pipeline's total first, then each step.
    const series = [{ name: 'total', points: p.total }].concat(p.steps.map((s) => ({ name: s.step, points: s.points })));
    const legend = el('div', { class: 'legend' }, el('span', { 'data-step': '' }, el('i', { style: { background: COLOURS[0] } }), 'pipeline total'),
      p.steps.map((s, i) => el('span', { 'data-step': s.step },
      el('i', { style: { background: COLOURS[(i + 1) % COLOURS.length] } }),
      s.step + ' (' + (s.energy_methods.length ? s.energy_methods.join(', ') : 'no calls') + (s.modelled ? ', modelled' : '') + ')')));
    const totals = (points) => points.reduce((t, x) => ({ calls: t.calls + x.calls, energy_j: t.energy_j + x.energy_j, cost: t.cost + x.cost, gco2e: t.gco2e + x.gco2e }),
      { calls: 0, energy_j: 0, cost: 0, gco2e: 0 });
    const rows = p.steps.map((s) => {
      const t = totals(s.points);
      return el('tr', { 'data-step': s.step }, el('td', {}, s.step), el('td', { class: 'num' }, t.calls), el('td', { class: 'num' }, number(t.energy_j, 4)),
        el('td', { class: 'num' }, number(t.cost, 6)), el('td', { class: 'num' }, number(t.gco2e, 6)),
        el('td', { 'data-method': '' }, s.energy_methods.join(', ') + (s.modelled ? ' (modelled)' : '')));
    });
    return el('section', { class: 'card', 'data-card': p.pipeline }, el('h2', {}, p.pipeline), legend,
      el('div', { class: 'charts' }, chart('Energy', series, 'energy_j', 'J'), chart('Cost', series, 'cost', 'currency'), chart('CO2', series, 'gco2e', 'g CO2e')),
      el('table', {}, el('tr', {}, el('th', {}, 'step'), el('th', { class: 'num' }, 'calls'), el('th', { class: 'num' }, 'energy J'), el('th', { class: 'num' }, 'cost'),
        el('th', { class: 'num' }, 'g CO2e'), el('th', {}, 'energy method')), rows));
  });
  show('receipts', ...cards);
}

function toMillis(text) {
  return text ? String(new Date(text).getTime()) : '';
}

async function invocationsView(params) {
  const all = await layouts();
  const pipeline = el('select', { name: 'pipeline' }, el('option', { value: '' }, 'any'), all.map((l) => el('option', { value: l.pipeline }, l.pipeline)));
  pipeline.value = params.get('pipeline') || '';
  const outcome = el('select', { name: 'outcome' }, ['any', 'ok', 'failed'].map((o) => el('option', { value: o }, o)));
  outcome.value = params.get('outcome') || 'any';
  const id = el('input', { name: 'id', placeholder: 'invocation id', size: 28 });
  const since = el('input', { name: 'since', type: 'datetime-local', value: params.get('since') || '' });
  const until = el('input', { name: 'until', type: 'datetime-local', value: params.get('until') || '' });
  const form = el('form', { class: 'search', onsubmit: (event) => {
    event.preventDefault();
    if (id.value.trim()) { location.hash = '#/invocation/' + encodeURIComponent(id.value.trim()); return; }
    const query = new URLSearchParams({ pipeline: pipeline.value, outcome: outcome.value, since: since.value, until: until.value });
    location.hash = '#/invocations?' + query;
  } }, el('label', {}, 'Id', id), el('label', {}, 'Pipeline', pipeline), el('label', {}, 'Outcome', outcome),
  el('label', {}, 'From', since), el('label', {}, 'To', until), el('button', { type: 'submit' }, 'Search'));
  const query = new URLSearchParams({ limit: '100', pipeline: pipeline.value, outcome: outcome.value, since: toMillis(since.value), until: toMillis(until.value) });
  let list;
  try {
    const found = await api('/v2/console/invocations?' + query);
    list = found.length === 0 ? el('p', { class: 'muted', 'data-empty': '' }, 'No recorded invocation matches.') : el('table', { 'data-list': 'invocations' },
      el('tr', {}, ['time', 'invocation', 'pipeline', 'outcome', 'wall', 'CPU', 'energy J', 'cost'].map((h) => el('th', {}, h))),
      found.map((r) => el('tr', { 'data-invocation': r.invocation_id, 'data-outcome': r.outcome },
        el('td', {}, time(r.unix_ms)), el('td', {}, el('a', { href: '#/invocation/' + encodeURIComponent(r.invocation_id) }, r.invocation_id)),
        el('td', {}, r.pipeline), el('td', { class: r.outcome === 'failed' ? 'error' : '', title: r.error || '' }, r.outcome),
        el('td', { class: 'num' }, micros(r.wall_us)), el('td', { class: 'num' }, micros(r.cpu_us)), el('td', { class: 'num' }, number(r.energy_j, 5)),
        el('td', { class: 'num' }, number(r.cost, 8)))));
  } catch (error) {
    list = failure(error);
  }
  show('invocations', el('section', { class: 'card' }, el('h2', {}, 'Invocations'), form, list));
}

function tensorText(t) {
  return t.name + ' ' + t.datatype + '[' + t.shape.join(',') + ']';
}

// A sensitive tensor has only a keyed HMAC: its plain hash could be checked against guesses.
function tensorHash(t) {
  return t.hmac_sha256 ? 'hmac-sha256:' + t.hmac_sha256 : t.sha256 || '';
}

async function invocationView(id) {
  const record = await api('/v2/invocations/' + encodeURIComponent(id));
  const layout = (await layouts()).find((l) => l.pipeline === record.pipeline);
  // Each edge's tensors as this invocation saw them.
  const labels = {};
  const edgeRows = [];
  const add = (edge, tensor) => {
    labels[edge] = (labels[edge] ? labels[edge] + '; ' : '') + tensorText(tensor);
    edgeRows.push(el('tr', { 'data-edge-row': edge, 'data-tensor': tensor.name }, el('td', {}, edge.replace('->', ' → ')), el('td', {}, tensor.name),
      el('td', {}, tensor.datatype), el('td', {}, '[' + tensor.shape.join(', ') + ']'), el('td', {}, el('code', {}, tensorHash(tensor)))));
  };
  const receiptOf = Object.fromEntries(record.receipt.steps.map((s) => [s.step, s]));
  for (const step of record.steps) {
    const incoming = layout ? layout.edges.filter((e) => e.to === 'step:' + step.step) : [];
    step.inputs.forEach((tensor) => {
      const edge = incoming.find((e) => e.tensors.some((t) => t === tensor.name || t.endsWith(' as ' + tensor.name)));
      if (edge) add(edgeId(edge), tensor);
    });
  }
  for (const output of record.outputs) {
    const edge = layout && layout.edges.find((e) => e.to === 'output:' + output.name);
    if (edge) add(edgeId(edge), output);
  }
  const parts = [el('h2', {}, 'Invocation ', el('code', {}, record.invocation_id)),
    el('p', {}, record.pipeline + ' · ' + time(record.unix_ms) + ' · ' + (record.error ? 'failed' : 'ok'))];
  if (record.error) parts.push(el('p', { class: 'error', 'data-record-error': '' }, record.error.message));
  if (layout) {
    const graph = drawGraph(layout, labels);
    graph.dataset.trace = record.invocation_id;
    for (const step of record.steps) {
      const node = graph.querySelector('[data-node="' + CSS.escape('step:' + step.step) + '"] [data-field=live]');
      const r = receiptOf[step.step];
      if (node && r) {
        setLines(node, ['at +' + micros(step.started_after_us) + ' · wall ' + micros(r.wall_us),
          'CPU ' + micros(r.cpu_us) + ' · inference ' + micros(r.inference_us), r.cold_start ? 'cold start' : 'warm']);
      }
    }
    if (record.error && record.error.step) {
      const failed = graph.querySelector('[data-node="' + CSS.escape('step:' + record.error.step) + '"]');
      if (failed) failed.classList.add('failing');
    }
    parts.push(graph);
  }
  parts.push(el('h3', {}, 'Edges'), el('table', { 'data-edges': '' },
    el('tr', {}, ['edge', 'tensor (as the step sees it)', 'datatype', 'shape', 'hash'].map((h) => el('th', {}, h))), edgeRows));
  const r = record.receipt;
  parts.push(el('h3', {}, 'Receipt'), el('table', { 'data-receipt': '' },
    el('tr', {}, ['step', 'wall', 'CPU', 'inference', 'energy J', 'method', 'cost', 'g CO2e'].map((h) => el('th', {}, h))),
    r.steps.map((s) => el('tr', {}, el('td', {}, s.step), el('td', {}, micros(s.wall_us)), el('td', {}, micros(s.cpu_us)), el('td', {}, micros(s.inference_us)),
      el('td', {}, number(s.energy_j, 5)), el('td', {}, s.energy_method + (s.energy_method === 'cpu-model' ? ' (modelled)' : '')), el('td', {}, number(s.cost, 8)), el('td', {}, number(s.gco2e, 8)))),
    el('tr', {}, el('th', {}, 'total'), el('th', {}, micros(r.wall_us)), el('th', {}, micros(r.cpu_us)), el('th', {}, ''), el('th', {}, number(r.energy_j, 5)),
      el('th', {}, r.energy_method), el('th', {}, number(r.cost, 8)), el('th', {}, number(r.gco2e, 8)))));
  parts.push(el('h3', {}, 'Provenance'), el('table', { 'data-provenance': '' },
    el('tr', {}, ['step', 'component', 'digest', 'models (digest, device)', 'grants'].map((h) => el('th', {}, h))),
    record.steps.map((s) => el('tr', {}, el('td', {}, s.step), el('td', {}, s.component), el('td', {}, el('code', {}, s.component_digest)),
      el('td', {}, s.models.map(([name, digest, device]) => el('div', {}, name + ' ', el('code', {}, digest), ' ' + device))),
      el('td', {}, [s.granted_models.length ? 'models: ' + s.granted_models.join(', ') : '', s.config_keys.length ? ' config: ' + s.config_keys.join(', ') : ''].join(''))))));
  show('invocation', el('section', { class: 'card' }, ...parts));
}

async function residencyView() {
  const status = await api('/v2/status');
  const mib = (bytes) => (bytes === null || bytes === undefined ? '–' : (bytes / 1048576).toFixed(1) + ' MiB');
  const rows = status.components.map((c) => {
    const cold = c.last_cold_start;
    const breakdown = cold ? 'pull ' + micros(cold.pull_us) + ' · compile ' + micros(cold.compile_us) + ' (' + cold.compile_source + ') · link ' + micros(cold.link_us) +
      ' · first instance ' + micros(cold.instantiate_us) : '–';
    return el('tr', { 'data-component': c.name, 'data-state': c.state }, el('td', {}, c.name), el('td', {}, c.state),
      el('td', {}, c.last_used_unix_ms ? time(c.last_used_unix_ms) : 'never'), el('td', { class: 'num' }, c.cold_starts), el('td', {}, breakdown),
      el('td', {}, el('code', {}, c.digest || '')));
  });
  show('residency', el('section', { class: 'card' }, el('h2', {}, 'Residency'),
    el('p', { 'data-memory': '' }, 'Resident memory: ' + mib(status.resident_memory_bytes) + ' · models loaded: ' + (status.models.loaded.join(', ') || 'none') +
      ' (' + mib(status.models.loaded_bytes) + ' of ' + status.models.registered + ' registered; ' + status.models.loads + ' loads, ' + status.models.evictions + ' evictions)'),
    el('table', {}, el('tr', {}, ['component', 'state', 'last used', 'cold starts', 'last cold start', 'digest'].map((h) => el('th', {}, h))), rows)));
}

// ---- routing ---------------------------------------------------------------

async function render() {
  const [path, query] = (location.hash.slice(1) || '/pipelines').split('?');
  const params = new URLSearchParams(query || '');
  try {
    if (path.startsWith('/invocation/')) await invocationView(decodeURIComponent(path.slice('/invocation/'.length)));
    else if (path === '/invocations') await invocationsView(params);
    else if (path === '/receipts') await receiptsView();
    else if (path === '/residency') await residencyView();
    else await pipelinesView();
  } catch (error) {
    show('error', failure(error));
  }
}

document.getElementById('key').value = state.key;
document.getElementById('key-form').onsubmit = (event) => {
  event.preventDefault();
  state.key = document.getElementById('key').value.trim();
  sessionStorage.setItem('weir-key', state.key);
  state.layouts = null;
  restartStream();
  render();
};
window.addEventListener('hashchange', render);
render();
stream();
