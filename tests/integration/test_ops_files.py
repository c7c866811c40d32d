"""The operations files refer only to metrics the supervisor exports.

packaging/grafana/dingo.json (the Grafana board) and packaging/prometheus/dingo.rules.yml
(the alerting rules; promtool unit-tests their logic in ctest ops.prometheus_rules) name
dingo_* series in PromQL. A misspelled or renamed metric gives an empty panel or an alert
that never fires, silently; this suite catches it. The names the supervisor exports are
read from supervisor/Status.cpp (every family passed to m.family, and the per-worker
table), and that reading is checked against a real scrape of a running supervisor.
"""
import json
import os
import re
import unittest

from harness import SOURCE, Supervisor, http_get, parse_metrics

BOARD = os.path.join(SOURCE, "packaging", "grafana", "dingo.json")
RULES = os.path.join(SOURCE, "packaging", "prometheus", "dingo.rules.yml")
STATUS_CPP = os.path.join(SOURCE, "supervisor", "Status.cpp")

# Families a supervisor with 2 idle workers and no [auth] leaves out of its scrape
# (a family with no series is not written): refusals appear with the first refusal,
# the token cache's counters with [auth], dingo_hub_nodes with the redis engine. Every
# other family is always there.
CONDITIONAL = {"dingo_worker_auth_refusals_total", "dingo_worker_auth_cache_hits_total",
               "dingo_worker_auth_cache_misses_total",
               "dingo_hub_nodes"}  # the node registry: the redis engine only
# Suffixes a histogram or summary family's samples add to its name.
SAMPLE_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}

PROMQL_WORDS = {"sum", "max", "min", "avg", "count", "rate", "irate", "increase", "by", "without", "offset",
                "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool"}


def exported_families():
    """{dingo_NAME: TYPE} for every family renderMetrics can write, read from its source."""
    with open(STATUS_CPP) as f:
        src = f.read()
    body = src[src.index("std::string renderMetrics("):]
    body = body[:body.index("\n}\n")]
    families = {}
    # m.family("name", "type", ...): the fixed families.
    for name, kind in re.findall(r'm\.family\(\s*"([a-z0-9_]+)",\s*"([a-z]+)"', body):
        families["dingo_" + name] = kind
    # The per-worker table: {"name", "type", "help", "key", scale}, written by a loop.
    table = body[body.index("const PerWorker per_worker[] = {"):]
    table = table[:table.index("};")]
    for name, kind in re.findall(r'\{\s*"([a-z0-9_]+)",\s*"(gauge|counter|histogram|summary)"', table):
        families["dingo_" + name] = kind
    return families


def promql_metric_names(expr):
    """Every metric name a PromQL expression selects: identifiers that are not functions,
    keywords, label names inside {} or by (...)/without (...) lists, or strings."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # strings
    text = re.sub(r"\{[^}]*\}", "{}", text)                   # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)                  # ranges, subqueries
    text = re.sub(r"\$\{?\w+\}?", "", text)                   # Grafana variables
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = m.group(0)
        after = text[m.end():].lstrip()
        if word in PROMQL_WORDS or after.startswith("("):
            continue  # a keyword or a function call
        if re.fullmatch(r"\d*[smhdwy]", word) or word in ("e", "Inf", "NaN"):
            continue
        names.add(word)
    return names


def unknown_metrics(exprs, families):
    """(where, name) for each metric an expression names that no family exports."""
    out = []
    for where, expr in exprs:
        for name in sorted(promql_metric_names(expr)):
            if name in families:
                continue
            base = [name[:-len(s)] for kind, sfx in SAMPLE_SUFFIXES.items() for s in sfx
                    if name.endswith(s) and families.get(name[:-len(s)]) == kind]
            if not base:
                out.append((where, name))
    return out


def board_panels(board):
    for p in board["panels"]:
        yield p
        yield from p.get("panels", [])  # a collapsed row keeps its panels inside it


def board_exprs(board):
    for p in board_panels(board):
        for t in p.get("targets", []):
            yield f"panel {p['title']!r} {t.get('refId')}", t["expr"]
    for v in board["templating"]["list"]:
        q = v.get("query")
        if v["type"] == "query":
            q = q["query"] if isinstance(q, dict) else q
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", q)
            yield f"variable {v['name']}", inner.group(1) if inner else q


def rules_exprs():
    """(alert, expr) of every rule, read with a small reader of the rules file's layout
    (Debian's python3 has no YAML module by default): `expr: x` or `expr: |` followed by
    its indented lines."""
    with open(RULES) as f:
        lines = f.read().splitlines()
    out, alert = [], None
    for i, line in enumerate(lines):
        m = re.match(r"\s*- (alert|record): (\S+)", line)
        if m:
            alert = m.group(2)
        m = re.match(r"(\s*)expr: (.*)$", line)
        if not m:
            continue
        indent, value = len(m.group(1)), m.group(2).strip()
        if value in ("|", ">", "|-", ">-"):
            block = []
            for nxt in lines[i + 1:]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                block.append(nxt.strip())
            value = " ".join(block)
        out.append((alert, value))
    return out


class ExportedNamesTest(unittest.TestCase):
    """The names read from Status.cpp are the names a real scrape has."""

    @classmethod
    def setUpClass(cls):
        cls.families = exported_families()
        cls.sup = Supervisor(workers=2, tls=False).start()
        status, body, _ = http_get(cls.sup.admin_port, "/metrics")
        assert status == 200, status
        cls.scraped, _ = parse_metrics(body.decode() if isinstance(body, bytes) else body)

    @classmethod
    def tearDownClass(cls):
        cls.sup.cleanup()

    def test_source_and_scrape_agree(self):
        self.assertGreater(len(self.families), 60)
        self.assertEqual(set(self.scraped) - set(self.families), set(),
                         "families in a scrape that the reading of Status.cpp missed")
        self.assertEqual(set(self.families) - set(self.scraped), CONDITIONAL,
                         "families of Status.cpp missing from a scrape (or CONDITIONAL is stale)")
        for name, fam in self.scraped.items():
            self.assertEqual(fam.get("type"), self.families[name], name)

    def test_bus_degraded_is_zero_with_the_local_engine(self):
        status, body, _ = http_get(self.sup.admin_port, "/metrics")
        text = body.decode() if isinstance(body, bytes) else body
        self.assertIn('dingo_bus_degraded{engine="local"} 0\n', text)


class OpsFilesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.families = exported_families()
        with open(BOARD) as f:
            cls.board = json.load(f)  # fails the suite on invalid JSON

    def test_board_is_a_grafana_dashboard_with_a_datasource_variable(self):
        b = self.board
        for key in ("title", "uid", "panels", "templating", "schemaVersion"):
            self.assertIn(key, b)
        variables = {v["name"]: v for v in b["templating"]["list"]}
        self.assertEqual((variables["datasource"]["type"], variables["datasource"]["query"]),
                         ("datasource", "prometheus"))
        ids = [p["id"] for p in board_panels(b)]
        self.assertEqual(len(ids), len(set(ids)), "panel ids are unique")
        for p in board_panels(b):
            if p["type"] == "row":
                continue
            self.assertEqual(p["datasource"]["uid"], "${datasource}", p["title"])
            self.assertTrue(p["targets"], p["title"])
            for t in p["targets"]:
                self.assertEqual(t["datasource"]["uid"], "${datasource}", p["title"])
                self.assertTrue(t["expr"].strip(), p["title"])
            g = p["gridPos"]
            self.assertLessEqual(g["x"] + g["w"], 24, p["title"])

    def test_board_covers_the_issue_list(self):
        used = set()
        for _, expr in board_exprs(self.board):
            used |= promql_metric_names(expr)
        for name in ("dingo_supervisor_uptime_seconds", "dingo_workers", "dingo_worker_connections",
                     "dingo_worker_requests_total", "dingo_worker_cpu_seconds_total",
                     "dingo_worker_resident_memory_bytes", "dingo_handoffs_total", "dingo_handoff_dropped_total",
                     "dingo_worker_probes_failed_total", "dingo_worker_messages_delivered_total",
                     "dingo_worker_messages_published_total", "dingo_worker_polls_total",
                     "dingo_worker_sse_streams", "dingo_worker_tls_handshakes_total",
                     "dingo_worker_auth_refusals_total", "dingo_bus_degraded"):
            self.assertIn(name, used)

    def test_board_names_only_exported_metrics(self):
        exprs = list(board_exprs(self.board))
        self.assertGreater(len(exprs), 40)
        self.assertEqual(unknown_metrics(exprs, self.families), [])

    def test_rules_name_only_exported_metrics(self):
        exprs = rules_exprs()
        with open(RULES) as f:
            self.assertEqual(len(exprs), f.read().count("- alert:"), "one expression read per alert")
        self.assertGreaterEqual(len(exprs), 7)
        self.assertEqual(unknown_metrics(exprs, self.families), [])

    def test_every_alert_points_at_a_runbook_section(self):
        with open(os.path.join(SOURCE, "docs", "runbook.md")) as f:
            # GitHub's anchors: lower case, punctuation dropped, spaces to hyphens.
            anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
                       for h in re.findall(r"^#+ (.+)$", f.read(), re.M)}
        with open(RULES) as f:
            text = f.read()
        links = re.findall(r'runbook: "/usr/share/doc/dingo/runbook\.md#([^"]+)"', text)
        self.assertEqual(len(links), text.count("- alert:"), "one runbook link per alert")
        for anchor in links:
            self.assertIn(anchor, anchors)

    def test_a_misspelled_or_suffixed_name_is_caught(self):
        f = dict(self.families, dingo_test_latency_seconds="histogram")
        bad = [("a", 'sum by (worker) (rate(dingo_worker_request_total{instance=~"$instance"}[5m]))'),
               ("b", "dingo_workers_ready"),
               ("c", "rate(dingo_worker_connections_total[1m])"),
               ("d", "histogram_quantile(0.99, rate(dingo_test_latency_seconds_bucket[5m]))"),
               ("e", "dingo_worker_connections_bucket")]
        self.assertEqual(unknown_metrics(bad, f), [("a", "dingo_worker_request_total"), ("b", "dingo_workers_ready"),
                                                   ("c", "dingo_worker_connections_total"),
                                                   ("e", "dingo_worker_connections_bucket")])

    def test_promql_reader(self):
        self.assertEqual(promql_metric_names(
            'max by (job, instance, worker) (dingo_worker_restarts_total) - max by (job, instance, worker) '
            '(dingo_worker_restarts_total offset 15m) >= 3'), {"dingo_worker_restarts_total"})
        self.assertEqual(promql_metric_names(
            'sum(rate(a_total{x="y",state=~"b|c"}[$__rate_interval])) / on (instance) group_left (version) b_info'),
            {"a_total", "b_info"})


if __name__ == "__main__":
    unittest.main()
