// The local console's script: it refreshes the pages the server renders, opens a state's details and sends a
// redrive. Everything it writes into a page goes through textContent (never innerHTML), so a file name or an
// error is text, whatever it holds. No framework, no network beyond this server.
(function () {
  "use strict";

  var dataNode = document.getElementById("page-data");
  var data = dataNode ? JSON.parse(dataNode.textContent || "{}") : {};
  var pageName = document.body.getAttribute("data-page");

  // --- helpers ---------------------------------------------------------------------------------------------

  function el(tag, attributes, children) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (name) {
      if (attributes[name] !== null && attributes[name] !== undefined) node.setAttribute(name, attributes[name]);
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
    });
    return node;
  }

  function when(iso) {
    return iso ? iso.slice(0, 19).replace("T", " ") : "";
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 60) return seconds.toFixed(1) + " s";
    var whole = Math.round(seconds);
    var minutes = Math.floor(whole / 60);
    if (minutes < 60) return minutes + " min " + (whole % 60) + " s";
    return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  function statusBadge(status) {
    var text = status || "—";
    return el("span", { class: "status status-" + text.toLowerCase().replace(/[^a-z0-9-]/g, "-") }, [text]);
  }

  function pretty(value) {
    if (value === null || value === undefined || value === "") return null;
    return typeof value === "string" ? value : JSON.stringify(value, null, 2);
  }

  function note(text) {
    var target = document.getElementById("refresh-note");
    if (target) target.textContent = text;
  }

  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" }).then(function (answer) {
      if (!answer.ok) throw new Error(url + ": HTTP " + answer.status);
      return answer.json();
    });
  }

  // Calls check() every `seconds` (a function of the last answer) while the page is visible.
  function poll(check, seconds) {
    var timer = null;
    function next(delay) {
      clearTimeout(timer);
      timer = setTimeout(run, delay * 1000);
    }
    function run() {
      if (document.hidden) return next(seconds());
      check().then(
        function () { next(seconds()); },
        function (error) { note("refresh failed: " + error.message); next(seconds() * 2); }
      );
    }
    next(seconds());
    document.addEventListener("visibilitychange", function () { if (!document.hidden) next(0.1); });
  }

  // --- executions -------------------------------------------------------------------------------------------

  function executionRow(row) {
    var outcome = row.outcome || (row.run_id ? "run" : "");
    var seconds = row.seconds;
    if (row.status === "RUNNING" && row.started) seconds = (Date.now() - Date.parse(row.started)) / 1000;
    return el("tr", { "data-status": row.status }, [
      el("td", {}, [el("a", { href: "/executions/" + encodeURIComponent(row.name) }, [row.name])]),
      el("td", {}, [statusBadge(row.status)]),
      el("td", { class: "file" }, [row.file || ""]),
      el("td", {}, [row.task || ""]),
      el("td", { class: "num" }, [typeof row.rows === "number" ? row.rows.toLocaleString("en") : ""]),
      el("td", {}, [when(row.started)]),
      el("td", { class: "num" }, [duration(seconds)]),
      el("td", {}, [row.run_id ? el("a", { href: "/runs/" + encodeURIComponent(row.run_id) }, [outcome]) : outcome]),
    ]);
  }

  function executionsPage() {
    var rows = data.executions || [];
    var select = document.getElementById("status-filter");
    var body = document.getElementById("execution-rows");

    function render() {
      var status = select ? select.value : "";
      var shown = rows.filter(function (row) { return !status || row.status === status; });
      body.replaceChildren.apply(body, shown.map(executionRow));
      var empty = document.getElementById("no-executions");
      if (empty) empty.hidden = shown.length > 0;
    }

    if (select) {
      select.addEventListener("change", function () {
        var url = new URL(location.href);
        if (select.value) url.searchParams.set("status", select.value);
        else url.searchParams.delete("status");
        history.replaceState(null, "", url);
        render();
      });
    }
    poll(
      function () {
        return getJSON("/api/executions").then(function (answer) {
          rows = answer.executions;
          render();
          note("updated " + new Date().toLocaleTimeString());
        });
      },
      function () { return rows.some(function (row) { return row.status === "RUNNING"; }) ? 3 : 10; }
    );
  }

  // --- one execution ----------------------------------------------------------------------------------------

  function section(title, value) {
    var text = pretty(value);
    if (text === null) return null;
    return el("div", { class: "detail" }, [el("h3", {}, [title]), el("pre", {}, [text])]);
  }

  function showState(id) {
    var aside = document.getElementById("state-details");
    var state = (data.states || {})[id];
    if (!aside || !state) return;
    document.querySelectorAll("g.state.selected").forEach(function (node) { node.classList.remove("selected"); });
    document.querySelectorAll("g.state").forEach(function (node) {
      if (node.getAttribute("data-state") === id) node.classList.add("selected");
    });
    var facts = [];
    function fact(label, value) {
      if (value !== null && value !== undefined && value !== "") facts.push(el("dt", {}, [label]), el("dd", {}, [String(value)]));
    }
    fact("Type", state.type);
    fact("Entered", when(state.entered));
    fact("Exited", when(state.exited));
    fact("Duration", duration(state.seconds));
    if (state.passes > 1) fact("Passes", state.passes + " (this is the last)");
    if (state.retries) fact("Retried", state.retries + "×, then succeeded");
    fact("Error", state.error);
    var children = [
      el("h2", {}, [state.name, " ", statusBadge(String(state.status).toUpperCase())]),
      state.comment ? el("p", { class: "comment" }, [state.comment]) : null,
      state.note ? el("p", { class: "note" }, [state.note]) : null,
      facts.length ? el("dl", { class: "facts" }, facts) : null,
    ];
    if (state.shards && state.shards.total) {
      var counts = Object.keys(state.shards.by_status).map(function (key) { return state.shards.by_status[key] + " " + key; });
      children.push(el("p", {}, ["Shards (status table): " + state.shards.total + " — " + counts.join(", ")]));
    }
    (state.map_runs || []).forEach(function (run, index) {
      var items = run.items || {};
      children.push(
        el("p", {}, [
          "Map run " + (index + 1) + ": " + run.status + (items.total !== undefined ? ", " + items.succeeded + " of " + items.total + " items succeeded" : ""),
          run.error ? " — " + run.error + ": " + (run.cause || "") : "",
        ])
      );
    });
    children.push(section("Cause", state.cause), section("Input", state.input), section("Output", state.output));
    if (!state.entered && !state.note) children.push(el("p", { class: "hint" }, ["Not reached in this execution."]));
    aside.replaceChildren.apply(aside, children.filter(Boolean));
    if (location.hash !== "#state=" + encodeURIComponent(id)) history.replaceState(null, "", "#state=" + encodeURIComponent(id));
  }

  function executionPage() {
    document.querySelectorAll("g.state").forEach(function (node) {
      var id = node.getAttribute("data-state");
      node.addEventListener("click", function (event) { event.stopPropagation(); showState(id); });
      node.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); showState(id); }
      });
    });
    document.querySelectorAll("a.state-link").forEach(function (link) {
      link.addEventListener("click", function (event) {
        event.preventDefault();
        showState(link.getAttribute("data-state"));
        document.getElementById("graph").scrollIntoView({ behavior: "smooth", block: "start" });
      });
    });
    if (location.hash.indexOf("#state=") === 0) showState(decodeURIComponent(location.hash.slice(7)));

    var status = data.status;
    var button = document.getElementById("redrive-button");
    if (button) {
      button.addEventListener("click", function () {
        if (!window.confirm("Redrive " + data.name + "? It resumes at the state that did not succeed.")) return;
        var message = document.getElementById("redrive-message");
        button.disabled = true;
        fetch(button.getAttribute("data-url"), {
          method: "POST",
          headers: { "X-Console-Action": "redrive", Accept: "application/json" },
          cache: "no-store",
        })
          .then(function (answer) {
            return answer.json().then(function (body) { return { ok: answer.ok, body: body }; });
          })
          .then(function (result) {
            if (!result.ok) throw new Error(result.body.error || "refused");
            message.textContent = "Redriven (" + result.body.redrive_count + "×): it resumes at " + result.body.resumes_at + ".";
            status = "RUNNING";
          })
          .catch(function (error) {
            message.textContent = error.message;
            button.disabled = false;
          });
      });
    }
    poll(
      function () {
        if (status !== "RUNNING") return Promise.resolve();
        return getJSON("/api/executions/" + encodeURIComponent(data.name) + "/status").then(function (answer) {
          if (answer.status !== data.status || answer.events !== data.events || answer.redrive_count !== data.redrive_count) {
            location.reload();
          }
          note("running; updated " + new Date().toLocaleTimeString());
        });
      },
      function () { return 2; }
    );
  }

  // --- one run ------------------------------------------------------------------------------------------------

  function runPage() {
    poll(
      function () {
        if (data.status !== "RUNNING") return Promise.resolve();
        return getJSON("/api/runs/" + encodeURIComponent(data.run_id)).then(function (answer) {
          if (answer.signature !== data.signature) location.reload();
          note("running; updated " + new Date().toLocaleTimeString());
        });
      },
      function () { return 3; }
    );
  }

  if (pageName === "executions") executionsPage();
  else if (pageName === "execution") executionPage();
  else if (pageName === "run") runPage();
})();
