  // ---- Self-test, injected by the tests only (HeadlessChromium.selfTest) --------------------------------
  // The first statements of the page's function, so that it reaches the page's state and catches the page's
  // errors and drawing from the start; in a block, so that its names cannot clash with the page's. Once the
  // page is drawn it clicks, searches, toggles and resets through the page's own event handlers, with real
  // events, and writes what it saw as JSON into a <pre id="selftest"> at the end of the body, for --dump-dom.
  // The search term is the URL's fragment.
  {
    const selfTestStart = performance.now();
    /** Errors the page raised, reported besides what the browser logs. */
    const errors = [];
    window.addEventListener('error', (event) => errors.push(String(event.message)));
    window.addEventListener('unhandledrejection', (event) => errors.push('unhandled rejection: ' + String(event.reason)));

    // What the last render drew, from the canvas itself: a render clears the canvas, then fills one
    // rectangle per frame it draws, in the highlight colour when the search matched the frame.
    const lastRender = { drawn: 0, highlighted: 0 };
    const canvasPrototype = CanvasRenderingContext2D.prototype;
    const clearRect = canvasPrototype.clearRect;
    const fillRect = canvasPrototype.fillRect;
    let highlight = null;  // HIGHLIGHT as the canvas reports fillStyle: normalized, e.g. #eb47eb
    canvasPrototype.clearRect = function (...args) {
      lastRender.drawn = 0;
      lastRender.highlighted = 0;
      return clearRect.apply(this, args);
    };
    canvasPrototype.fillRect = function (...args) {
      if (highlight === null) {
        const probe = document.createElement('canvas').getContext('2d');
        probe.fillStyle = HIGHLIGHT;
        highlight = probe.fillStyle;
      }
      lastRender.drawn++;
      if (this.fillStyle === highlight) lastRender.highlighted++;
      return fillRect.apply(this, args);
    };

    const markTime = (name) => performance.getEntriesByName(name, 'mark')[0].startTime;

    function selfTest(term) {
      const parsed = markTime('pybpfprof: parsed');
      const laidOut = markTime('pybpfprof: laid out');
      const drawn = markTime('pybpfprof: drawn');
      const result = {
        nodes: nodeCount,
        samples: rootTotal,
        canvasWidth: viewWidth,
        timings: {
          parseMs: parsed - selfTestStart,
          layoutMs: laidOut - parsed,
          firstRenderMs: drawn - laidOut,
          // From the start of navigation, so including the time the browser took to read the file.
          readyMs: drawn,
        },
        framesDrawn: lastRender.drawn,
      };
      const pointAt = (node) => {
        const rect = nodeRect(node);
        const bounds = canvas.getBoundingClientRect();
        return rect === null ? null
          : { clientX: bounds.left + rect.x + rect.width / 2, clientY: bounds.top + rect.y + ROW / 2 };
      };
      const mouse = (type, point) => canvas.dispatchEvent(new MouseEvent(type, {
        bubbles: true, cancelable: true, view: window, button: 0, clientX: point.clientX, clientY: point.clientY,
      }));

      // 1. Hover and click a frame: the widest one the term matches, else the root's widest child.
      let target = -1;
      let pattern = null;
      if (term) {
        try { pattern = new RegExp(term, 'i'); } catch (error) { pattern = null; }
      }
      for (let i = 1; i < nodeCount; i++) {
        const frame = nodeFrame[i];
        const eligible = pattern ? (pattern.test(frameName(frame)) || pattern.test(frameFile(frame))) : nodeDepth[i] === 1;
        if (eligible && (target < 0 || nodeTotal[i] > nodeTotal[target])) target = i;
      }
      result.click = { target: target, targetName: target >= 0 ? frameName(nodeFrame[target]) : null };
      const point = target >= 0 ? pointAt(target) : null;
      if (point !== null) {
        mouse('mousemove', point);
        result.tooltip = { visible: tooltip.style.display === 'block', text: tooltip.textContent };
        const clickStarted = performance.now();
        mouse('click', point);
        result.click.renderMs = performance.now() - clickStarted;
        const zoomedRect = nodeRect(zoom);
        result.click.zoom = zoom;
        result.click.zoomName = frameName(nodeFrame[zoom]);
        result.click.zoomedFullWidth = zoomedRect !== null && zoomedRect.x === 0 && zoomedRect.width === viewWidth;
        result.click.framesDrawn = lastRender.drawn;
      }

      // 2. Search, as typing does.
      if (term) {
        const searchStarted = performance.now();
        searchInput.value = term;
        searchInput.dispatchEvent(new Event('input', { bubbles: true }));
        result.search = {
          term: term,
          text: matchedLabel.textContent,
          samples: lastSearch.samples,
          percent: lastSearch.percent,
          highlighted: lastRender.highlighted,
          ms: performance.now() - searchStarted,
        };
      }

      // 3. Icicle: the root row moves from the bottom to the top.
      const rootBefore = nodeRect(0);
      icicleBox.click();
      const rootAfter = nodeRect(0);
      result.icicle = {
        checked: icicleBox.checked,
        rootTopBefore: rootBefore ? rootBefore.y : null,
        rootTopAfter: rootAfter ? rootAfter.y : null,
        framesDrawn: lastRender.drawn,
      };

      // 4. Reset zoom.
      resetButton.click();
      result.reset = { zoom: zoom, framesDrawn: lastRender.drawn };
      result.errors = errors.slice();
      return result;
    }

    function report(result) {
      const element = document.createElement('pre');
      element.id = 'selftest';
      element.textContent = JSON.stringify(result);
      document.body.append(element);
    }

    // After the page's script has run to its end (or failed, which the report then shows).
    setTimeout(() => {
      try {
        report(selfTest(decodeURIComponent(window.location.hash.slice(1))));
      } catch (error) {
        errors.push('self-test: ' + String(error && error.stack || error));
        report({ errors: errors });
      }
    }, 0);
  }
