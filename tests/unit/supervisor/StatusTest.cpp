#include "supervisor/Status.h"

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

using namespace dingo;
using json = nlohmann::json;

namespace {

json sampleStatus() {
  return json::parse(R"({
    "pid": 100, "version": "0.1.0", "uptime_s": 62.5, "generation": 1, "dispatch": "ip-hash",
    "listeners": [{"address": "127.0.0.1:8080", "tls": false, "accepted": 12}],
    "handoff": {"handed": 12, "retries": 1, "dropped": 0},
    "workers": [
      {"id": 0, "pid": 101, "state": "ready", "connections": 3, "accepted": 7, "requests": 9,
       "requests_per_s": 2.5, "bytes_in": 2048, "bytes_out": 4096, "rss_bytes": 5242880,
       "cpu_percent": 1.25, "cpu_seconds": 0.5, "restarts": 0, "last_probe_ms": null,
       "rejected": 4, "probes_served": 6, "reattached": 1},
      {"id": 1, "pid": 0, "state": "exited", "restarts": 2}
    ]})");
}

// name{labels} -> how many times that series appears, and the families that have a TYPE
// line but no sample.
struct Scrape {
  std::map<std::string, int> series;
  std::set<std::string> empty_families;
};

Scrape scrape(const std::string& text) {
  Scrape out;
  std::set<std::string> typed, sampled;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      typed.insert(line.substr(7, line.find(' ', 7) - 7));
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    ++out.series[line.substr(0, line.rfind(' '))];
    sampled.insert(line.substr(0, line.find_first_of("{ ")));
  }
  for (const auto& f : typed)
    if (!sampled.count(f)) out.empty_families.insert(f);
  return out;
}

}  // namespace

TEST(Metrics, EverySampleHasHelpAndType) {
  std::string text = renderMetrics(sampleStatus());
  std::set<std::string> typed;
  std::istringstream in(text);
  std::string line;
  int samples = 0;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      typed.insert(line.substr(7, line.find(' ', 7) - 7));
      continue;
    }
    if (line.rfind("#", 0) == 0) continue;
    ++samples;
    std::string name = line.substr(0, line.find_first_of("{ "));
    EXPECT_EQ(name.rfind("dingo_", 0), 0u) << line;
    EXPECT_TRUE(typed.count(name)) << "no TYPE before " << line;
  }
  EXPECT_GT(samples, 20);
  EXPECT_NE(text.find("dingo_worker_connections{worker=\"0\",pid=\"101\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("dingo_workers{state=\"exited\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("dingo_worker_restarts_total{worker=\"1\",pid=\"0\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("dingo_listener_accepted_total{listener=\"127.0.0.1:8080\",tls=\"false\"} 12\n"),
            std::string::npos);
}

TEST(Metrics, CountersTheWorkersSendAreExported) {
  std::string text = renderMetrics(sampleStatus());
  EXPECT_NE(text.find("dingo_worker_rejected_total{worker=\"0\",pid=\"101\"} 4\n"), std::string::npos) << text;
  EXPECT_NE(text.find("dingo_worker_probes_served_total{worker=\"0\",pid=\"101\"} 6\n"), std::string::npos);
  EXPECT_NE(text.find("dingo_worker_reattachments_total{worker=\"0\",pid=\"101\"} 1\n"), std::string::npos);
}

TEST(Metrics, AFamilyWithNoSeriesIsLeftOut) {
  json st = sampleStatus();
  st["workers"] = json::array();
  st["listeners"] = json::array();
  std::string text = renderMetrics(st);
  EXPECT_TRUE(scrape(text).empty_families.empty()) << text;
  EXPECT_EQ(text.find("dingo_worker_"), std::string::npos) << text;
  EXPECT_EQ(text.find("dingo_listener_accepted_total"), std::string::npos) << text;
  EXPECT_EQ(text.find("dingo_hub_"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE dingo_supervisor_uptime_seconds gauge\ndingo_supervisor_uptime_seconds 62.5\n"),
            std::string::npos)
      << text;
  EXPECT_TRUE(scrape(renderMetrics(sampleStatus())).empty_families.empty());
}

TEST(Metrics, ADrainingWorkerAndItsSuccessorAreDistinctSeries) {
  json st = sampleStatus();
  // Slot 0's successor is ready while the old process drains (reload, drain-worker),
  // and slot 1 is between processes while a replaced one has just exited.
  st["workers"].push_back({{"id", 0}, {"pid", 102}, {"state", "draining"}, {"connections", 1}});
  st["workers"].push_back({{"id", 1}, {"pid", 0}, {"state", "exited"}, {"restarts", 0}});
  std::string text = renderMetrics(st);
  Scrape s = scrape(text);
  for (const auto& [series, n] : s.series) EXPECT_EQ(n, 1) << series << " appears " << n << " times";
  EXPECT_EQ(s.series.count("dingo_worker_connections{worker=\"0\",pid=\"101\"}"), 1u);
  EXPECT_EQ(s.series.count("dingo_worker_connections{worker=\"0\",pid=\"102\"}"), 1u);
  EXPECT_NE(text.find("dingo_worker_connections{worker=\"0\",pid=\"102\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("dingo_workers{state=\"draining\"} 1\n"), std::string::npos) << text;
}

TEST(Metrics, BusDegradedFollowsTheStatusDocument) {
  json st = sampleStatus();
  std::string text = renderMetrics(st);
  EXPECT_EQ(text.find("dingo_bus_degraded"), std::string::npos) << "no bus in the status, no series: " << text;

  st["bus"] = {{"engine", "local"}, {"degraded", false}};
  text = renderMetrics(st);
  EXPECT_NE(text.find("# TYPE dingo_bus_degraded gauge\ndingo_bus_degraded{engine=\"local\"} 0\n"),
            std::string::npos)
      << text;

  st["bus"] = {{"engine", "redis"}, {"degraded", true}};
  text = renderMetrics(st);
  EXPECT_NE(text.find("dingo_bus_degraded{engine=\"redis\"} 1\n"), std::string::npos) << text;
  EXPECT_TRUE(scrape(text).empty_families.empty()) << text;
}

TEST(StatusTable, ShowsEveryWorker) {
  std::string table = renderStatusTable(sampleStatus());
  EXPECT_NE(table.find("supervisor  pid 100  version 0.1.0  uptime 1m02s  generation 1  dispatch ip-hash"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("127.0.0.1:8080 (plain, 12 accepted)"), std::string::npos) << table;
  EXPECT_NE(table.find("0   101      ready           3         7      2.5     2.0K     4.0K    5.0M    1.2         0       -"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("1   0        exited"), std::string::npos) << table;
}

TEST(Human, Units) {
  EXPECT_EQ(humanBytes(512), "512B");
  EXPECT_EQ(humanBytes(1536), "1.5K");
  EXPECT_EQ(humanDuration(45), "45s");
  EXPECT_EQ(humanDuration(3725), "1h02m");
}
