'use strict';
(function () {
  // Everything the page does, in order: read the data, lay out the tree once, then draw it for the current
  // zoom, mode and search whenever one of them changes. Each phase ends with a User Timing mark, which
  // DevTools' Performance panel shows and the browser tests report.

  // ---- Data -------------------------------------------------------------------------------------------
  // See FlameGraphHTMLExporter.swift for the format. Typed arrays: a million nodes take a few megabytes
  // and no object each.
  const data = JSON.parse(document.getElementById('profile-data').textContent);
  const strings = data.strings;
  const frameTable = data.frames;        // kind, name, file, line for each frame
  const KIND_PYTHON = 0, KIND_NATIVE = 1, KIND_KERNEL = 2, KIND_MARKER = 3, KIND_PROCESS = 4, KIND_ROOT = 5, KIND_CONTAINER = 6;
  const frameCount = frameTable.length / 4;
  const nodeFrame = Int32Array.from(data.nodes.frame);
  const nodeDepth = Int32Array.from(data.nodes.depth);
  const nodeTotal = Float64Array.from(data.nodes.total);
  const nodeCount = nodeFrame.length;
  data.nodes = null;  // the typed arrays replace the parsed ones, which are many times their size
  performance.mark('pybpfprof: parsed');

  function frameKind(frame) { return frameTable[4 * frame]; }
  function frameName(frame) { return strings[frameTable[4 * frame + 1]]; }
  function frameFile(frame) { return strings[frameTable[4 * frame + 2]]; }
  function frameLine(frame) { return frameTable[4 * frame + 3]; }

  // ---- Layout, once -----------------------------------------------------------------------------------
  // From the preorder and depths, in one pass: each node's parent, the end of its subtree (the index of the
  // first node after it, so that a narrow subtree is skipped in one step), its offset from the root's left
  // edge in the totals' unit, and its self count; then, backwards, the deepest level below each node, which
  // sizes the canvas for a zoom.
  const parent = new Int32Array(nodeCount);
  const subtreeEnd = new Int32Array(nodeCount);
  const offset = new Float64Array(nodeCount);
  const selfCount = new Float64Array(nodeCount);
  const deepest = new Int32Array(nodeCount);
  (function layOut() {
    let maxDepth = 0;
    for (let i = 0; i < nodeCount; i++) maxDepth = Math.max(maxDepth, nodeDepth[i]);
    const open = new Int32Array(maxDepth + 2);      // open[d]: the last node seen at depth d
    const cursor = new Float64Array(maxDepth + 2);  // cursor[d]: where the next node at depth d starts
    let top = -1;                                   // depth of the deepest open node
    for (let i = 0; i < nodeCount; i++) {
      const d = nodeDepth[i];
      for (let k = top; k >= d; k--) subtreeEnd[open[k]] = i;
      if (d === 0) {
        parent[i] = -1;
        offset[i] = 0;
      } else {
        const p = open[d - 1];
        parent[i] = p;
        offset[i] = cursor[d];
        selfCount[p] -= nodeTotal[i];
      }
      selfCount[i] += nodeTotal[i];
      cursor[d] = offset[i] + nodeTotal[i];
      cursor[d + 1] = offset[i];
      open[d] = i;
      top = d;
      deepest[i] = d;
    }
    for (let k = top; k >= 0; k--) subtreeEnd[open[k]] = nodeCount;
    for (let i = nodeCount - 1; i > 0; i--) {
      const p = parent[i];
      if (deepest[i] > deepest[p]) deepest[p] = deepest[i];
    }
  })();
  performance.mark('pybpfprof: laid out');
  const rootTotal = nodeCount > 0 ? nodeTotal[0] : 0;

  // ---- Units ------------------------------------------------------------------------------------------
  // A node's total counts samples (modes cpu and gil: one sampling period each) or microseconds (modes with
  // off-CPU intervals, whose samples weigh their length); either way one of it is data.unitNs nanoseconds, shown
  // as time of the mode's kind: "CPU time", "wall time".
  const countsSamples = data.unit === 'samples';
  function formatTime(amount) {
    const seconds = amount * data.unitNs / 1e9;
    const text = seconds >= 1 ? seconds.toFixed(2) + ' s'
      : seconds >= 1e-3 ? (seconds * 1e3).toFixed(1) + ' ms' : (seconds * 1e6).toFixed(0) + ' \u00b5s';
    return text + ' of ' + data.timeDescription;
  }
  /** "120.0 ms of CPU time (12 samples)", or "1.23 s of wall time" where totals are microseconds. */
  function formatAmount(amount) {
    if (!countsSamples) return formatTime(amount);
    const samples = amount === 1 ? '1 sample' : amount.toLocaleString('en-US') + ' samples';
    return formatTime(amount) + ' (' + samples + ')';
  }

  // ---- Heading ----------------------------------------------------------------------------------------
  const commands = data.processes.map((p) => (p.command || 'pid ' + p.pid) + ' (pid ' + p.pid + ')');
  const heading = commands.length ? commands.join(', ') : 'pybpfprof flame graph';
  document.getElementById('title').textContent = heading;
  document.title = heading + ' - pybpfprof';
  const seconds = data.durationNs / 1e9;
  const versions = Array.from(new Set(data.processes.map((p) => p.python).filter((v) => v)));
  const summaryParts = [
    data.samples.toLocaleString('en-US') + ' samples',
    formatTime(rootTotal) + ' in ' + seconds.toFixed(seconds < 10 ? 2 : 1) + ' s',
    data.sampleRate + ' Hz',
    'started ' + new Date(data.startDate * 1000).toISOString().replace('.000Z', 'Z'),
  ];
  if (versions.length) summaryParts.push('Python ' + versions.join(', '));
  summaryParts.push(nodeCount.toLocaleString('en-US') + ' nodes');
  document.getElementById('summary').textContent = summaryParts.join(' \u00b7 ');

  // ---- Colours ----------------------------------------------------------------------------------------
  // A family per kind of frame, the hue within it chosen by a hash of the name so that a function keeps
  // its colour across the graph and between zooms.
  const HIGHLIGHT = 'hsl(300, 80%, 60%)';
  const colours = new Array(frameCount);
  function hash(text) {
    let h = 2166136261;  // FNV-1a
    for (let i = 0; i < text.length; i++) {
      h ^= text.charCodeAt(i);
      h = Math.imul(h, 16777619);
    }
    return (h >>> 0) / 4294967296;
  }
  function colour(frame) {
    let c = colours[frame];
    if (c !== undefined) return c;
    const h = hash(frameName(frame));
    const v = hash(frameName(frame) + '#');
    switch (frameKind(frame)) {
      case KIND_PYTHON: c = 'hsl(' + (48 + 62 * h).toFixed(1) + ',' + (62 + 16 * v).toFixed(1) + '%,' + (54 + 10 * v).toFixed(1) + '%)'; break;
      case KIND_NATIVE: c = 'hsl(' + (196 + 36 * h).toFixed(1) + ',' + (55 + 20 * v).toFixed(1) + '%,' + (62 + 10 * v).toFixed(1) + '%)'; break;
      case KIND_KERNEL: c = 'hsl(' + (4 + 30 * h).toFixed(1) + ',' + (75 + 15 * v).toFixed(1) + '%,' + (56 + 8 * v).toFixed(1) + '%)'; break;
      case KIND_PROCESS: c = 'hsl(' + (262 + 24 * h).toFixed(1) + ',35%,78%)'; break;
      case KIND_ROOT: c = 'hsl(0,0%,82%)'; break;
      case KIND_CONTAINER: c = 'hsl(' + (160 + 24 * h).toFixed(1) + ',30%,72%)'; break;
      default: c = 'hsl(0,0%,' + (70 + 10 * h).toFixed(1) + '%)';
    }
    colours[frame] = c;
    return c;
  }

  // ---- State ------------------------------------------------------------------------------------------
  const ROW = 17;           // CSS pixels per level
  const MIN_WIDTH = 0.5;    // narrower nodes, and so all their descendants, are not drawn
  const canvas = document.getElementById('canvas');
  const context = canvas.getContext('2d');
  const tooltip = document.getElementById('tooltip');
  const searchInput = document.getElementById('search');
  const matchedLabel = document.getElementById('matched');
  const icicleBox = document.getElementById('icicle');
  const resetButton = document.getElementById('reset');
  let zoom = 0;             // the node spanning the full width
  let icicle = false;       // root on top instead of at the bottom
  let matchedFrames = null; // Uint8Array over frames while a search is active
  /** The last search's result: the label shows it rounded, the browser tests read it exact. `samples` is the
   *  matched total in the unit of the nodes' totals (microseconds in modes with intervals): the tests' name. */
  const lastSearch = { samples: 0, percent: 0 };

  // ---- Geometry ---------------------------------------------------------------------------------------
  // One function maps a node to its rectangle, for hit testing, scrolling and the browser tests alike.
  let viewWidth = 0;        // CSS pixels
  let levels = 1;           // rows on the canvas: the zoomed node's deepest level + 1

  function rowTop(depth) { return icicle ? depth * ROW : (levels - 1 - depth) * ROW; }
  function scale() { return nodeTotal[zoom] > 0 ? viewWidth / nodeTotal[zoom] : 0; }
  /** Whether `node` is the zoomed node or one of its ancestors: drawn across the full width. */
  function isAncestorOfZoom(node) { return node <= zoom && zoom < subtreeEnd[node]; }
  function isInZoomedSubtree(node) { return zoom <= node && node < subtreeEnd[zoom]; }
  /** {x, y, width} in CSS pixels from the canvas's top left, or null when the node is not shown. */
  function nodeRect(node) {
    if (node < 0 || node >= nodeCount) return null;
    if (isAncestorOfZoom(node)) return { x: 0, y: rowTop(nodeDepth[node]), width: viewWidth };
    if (!isInZoomedSubtree(node)) return null;
    const s = scale();
    const width = nodeTotal[node] * s;
    if (width < MIN_WIDTH) return null;
    return { x: (offset[node] - offset[zoom]) * s, y: rowTop(nodeDepth[node]), width: width };
  }

  // ---- Drawing ----------------------------------------------------------------------------------------
  const FONT = '11.5px ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace';
  let characterWidth = 7;

  function render() {
    levels = nodeCount > 0 ? deepest[zoom] + 1 : 1;
    const height = levels * ROW;
    // The height first: it can add or remove the window's scroll bar, and so change the width.
    canvas.style.height = height + 'px';
    viewWidth = Math.max(1, canvas.clientWidth);
    // Chromium refuses canvases taller than 32767 device pixels: a very deep zoom gives up sharpness first.
    const ratio = Math.max(0.25, Math.min(window.devicePixelRatio || 1, 32000 / height));
    canvas.width = Math.round(viewWidth * ratio);
    canvas.height = Math.round(height * ratio);
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, viewWidth, height);
    context.font = FONT;
    context.textBaseline = 'middle';
    characterWidth = context.measureText('m').width || 7;
    if (nodeCount === 0 || rootTotal === 0) return;
    // The zoomed node's ancestors, full width.
    for (let a = parent[zoom]; a >= 0; a = parent[a]) drawNode(a, 0, viewWidth);
    // Its subtree in preorder, stepping over every subtree too narrow to see.
    const s = scale();
    const left = offset[zoom];
    const end = subtreeEnd[zoom];
    for (let i = zoom; i < end;) {
      const width = nodeTotal[i] * s;
      if (width < MIN_WIDTH) {
        i = subtreeEnd[i];
        continue;
      }
      drawNode(i, (offset[i] - left) * s, width);
      i++;
    }
  }

  function drawNode(node, x, width) {
    const frame = nodeFrame[node];
    const highlighted = matchedFrames !== null && matchedFrames[frame] === 1;
    const y = rowTop(nodeDepth[node]);
    context.fillStyle = highlighted ? HIGHLIGHT : colour(frame);
    // A one-pixel gap between neighbours once they are wide enough to spare it.
    context.fillRect(x, y, width > 3 ? width - 1 : width, ROW - 1);
    const fits = Math.floor((width - 6) / characterWidth);
    if (fits >= 3) {
      const name = frameName(frame);
      const label = name.length <= fits ? name : name.slice(0, fits - 1) + '\u2026';
      context.fillStyle = '#111';
      context.fillText(label, x + 3, y + ROW / 2);
    }
  }

  // ---- Hit testing ------------------------------------------------------------------------------------
  /** The drawn node under a point given in client coordinates, or -1. */
  function nodeAt(clientX, clientY) {
    if (nodeCount === 0 || rootTotal === 0) return -1;
    const bounds = canvas.getBoundingClientRect();
    const x = clientX - bounds.left;
    const y = clientY - bounds.top;
    if (x < 0 || x >= viewWidth || y < 0) return -1;
    const row = Math.floor(y / ROW);
    if (row >= levels) return -1;
    const depth = icicle ? row : levels - 1 - row;
    if (depth <= nodeDepth[zoom]) {
      let node = zoom;
      while (nodeDepth[node] > depth) node = parent[node];
      return node;
    }
    // Down from the zoomed node, into the child that covers the point at each level.
    const position = offset[zoom] + x / scale();
    let node = zoom;
    while (nodeDepth[node] < depth) {
      let child = node + 1;
      const end = subtreeEnd[node];
      while (child < end && !(offset[child] <= position && position < offset[child] + nodeTotal[child])) {
        child = subtreeEnd[child];
      }
      if (child >= end) return -1;
      node = child;
    }
    return nodeRect(node) === null ? -1 : node;
  }

  // ---- Tooltip ----------------------------------------------------------------------------------------
  // Built once from elements; names go in as text only.
  const tooltipName = document.createElement('div');
  tooltipName.className = 'name';
  const tooltipWhere = document.createElement('div');
  tooltipWhere.className = 'where';
  const tooltipCounts = document.createElement('div');
  tooltipCounts.className = 'counts';
  tooltip.append(tooltipName, tooltipWhere, tooltipCounts);

  function percentOf(amount) { return rootTotal > 0 ? 100 * amount / rootTotal : 0; }
  function formatPercent(value) { return value.toFixed(2) + '%'; }

  function describeLocation(frame) {
    const file = frameFile(frame);
    const line = frameLine(frame);
    switch (frameKind(frame)) {
      case KIND_PYTHON: return 'Python \u00b7 ' + (file ? (line > 0 ? file + ':' + line : file) : 'file unknown');
      case KIND_NATIVE: return 'native \u00b7 ' + (file || 'library unknown');
      case KIND_KERNEL: return 'kernel';
      case KIND_PROCESS: return 'process' + (file ? ' \u00b7 ' + file : '');
      case KIND_ROOT: return 'all samples';
      case KIND_CONTAINER: return 'container \u00b7 ' + file;
      default: return 'marker';
    }
  }

  function showTooltip(node, clientX, clientY) {
    const frame = nodeFrame[node];
    tooltipName.textContent = frameName(frame);
    tooltipWhere.textContent = describeLocation(frame);
    tooltipCounts.textContent = formatAmount(nodeTotal[node]) + ', ' + formatPercent(percentOf(nodeTotal[node]))
      + ' \u00b7 self ' + formatAmount(selfCount[node]) + ', ' + formatPercent(percentOf(selfCount[node]));
    tooltip.style.display = 'block';
    // Beside the pointer, kept inside the window.
    const width = tooltip.offsetWidth, height = tooltip.offsetHeight;
    let left = clientX + 14, top = clientY + 14;
    if (left + width > window.innerWidth - 4) left = Math.max(4, clientX - width - 14);
    if (top + height > window.innerHeight - 4) top = Math.max(4, clientY - height - 14);
    tooltip.style.left = left + 'px';
    tooltip.style.top = top + 'px';
  }

  function hideTooltip() { tooltip.style.display = 'none'; }

  // ---- Interaction ------------------------------------------------------------------------------------
  function zoomTo(node) {
    if (node < 0 || node === zoom) return;
    zoom = node;
    render();
    keepInView(zoom);
  }

  /** Scrolls the window, if needed, so that the node's row is visible below the sticky toolbar: in a flame
   *  graph of deep stacks the root is at the bottom of a canvas taller than the window. */
  function keepInView(node) {
    const rect = nodeRect(node);
    if (rect === null) return;
    const top = canvas.getBoundingClientRect().top + rect.y;
    const visibleTop = document.getElementById('toolbar').getBoundingClientRect().bottom;
    if (top < visibleTop) {
      window.scrollBy(0, top - visibleTop - ROW);
    } else if (top + ROW > window.innerHeight) {
      window.scrollBy(0, top + 2 * ROW - window.innerHeight);
    }
  }

  canvas.addEventListener('mousemove', (event) => {
    const node = nodeAt(event.clientX, event.clientY);
    if (node < 0) hideTooltip(); else showTooltip(node, event.clientX, event.clientY);
  });
  canvas.addEventListener('mouseleave', hideTooltip);
  // A click zooms to the frame: its ancestors, the root among them, zoom back out.
  canvas.addEventListener('click', (event) => {
    const node = nodeAt(event.clientX, event.clientY);
    if (node < 0) return;
    zoomTo(node);
    showTooltip(node, event.clientX, event.clientY);
  });
  resetButton.addEventListener('click', () => zoomTo(0));
  icicleBox.addEventListener('change', () => {
    icicle = icicleBox.checked;
    hideTooltip();
    render();
    keepInView(zoom);
  });
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && document.activeElement !== searchInput) zoomTo(0);
  });

  // ---- Search -----------------------------------------------------------------------------------------
  // A regular expression, case-insensitive, tried against each frame's name and file once per search (not
  // per node); text that is not a valid expression is searched for as it is. What matched counts each sample
  // once: the totals of matched nodes with no matched ancestor.
  function search(term) {
    if (term === '') {
      matchedFrames = null;
      lastSearch.samples = 0;
      lastSearch.percent = 0;
      matchedLabel.textContent = '';
      render();
      return;
    }
    let pattern;
    try {
      pattern = new RegExp(term, 'i');
    } catch (error) {
      pattern = new RegExp(term.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'i');
    }
    matchedFrames = new Uint8Array(frameCount);
    for (let frame = 0; frame < frameCount; frame++) {
      if (frameKind(frame) === KIND_ROOT) continue;
      if (pattern.test(frameName(frame)) || pattern.test(frameFile(frame))) matchedFrames[frame] = 1;
    }
    let matched = 0;
    for (let i = 0; i < nodeCount;) {
      if (matchedFrames[nodeFrame[i]] === 1) {
        matched += nodeTotal[i];
        i = subtreeEnd[i];
      } else {
        i++;
      }
    }
    lastSearch.samples = matched;
    lastSearch.percent = percentOf(matched);
    matchedLabel.textContent = 'matched: ' + formatPercent(lastSearch.percent) + ', ' + formatAmount(matched);
    render();
  }
  searchInput.addEventListener('input', () => search(searchInput.value));

  // Redraw for a new width, once per frame at most.
  let resizePending = false;
  window.addEventListener('resize', () => {
    if (resizePending) return;
    resizePending = true;
    requestAnimationFrame(() => {
      resizePending = false;
      render();
    });
  });

  // ---- First render -----------------------------------------------------------------------------------
  if (nodeCount === 0 || rootTotal === 0) {
    const empty = document.createElement('div');
    empty.id = 'empty';
    empty.textContent = 'This profile has no samples.';
    document.getElementById('chart').append(empty);
  }
  render();
  keepInView(0);
  performance.mark('pybpfprof: drawn');
})();
