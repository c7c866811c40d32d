#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "dingo/nsclient/Resolver.h"
#include "dingo/nsclient/Store.h"

namespace dingo::ns {
namespace {

class TempDb {
 public:
  TempDb() {
    char tmpl[] = "/tmp/dingo-store-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  ~TempDb() { std::filesystem::remove_all(dir_); }
  std::string path() const { return dir_ + "/ns.db"; }

 private:
  std::string dir_;
};

TEST(Store, CountsHalveEveryHalfLife) {
  EXPECT_DOUBLE_EQ(Store::decayed(4, 1000, 1000), 4);
  EXPECT_DOUBLE_EQ(Store::decayed(4, 1000, 1000 + 3600), 2);
  EXPECT_DOUBLE_EQ(Store::decayed(4, 1000, 1000 + 7200), 1);
  EXPECT_DOUBLE_EQ(Store::decayed(0, 1000, 99999), 0);
}

TEST(Store, RecordsDecayBeforeEachNewOutcome) {
  TempDb t;
  Store s(t.path());
  s.recordFailure("192.0.2.1", 443, true, 1000);
  s.recordFailure("192.0.2.1", 443, true, 1000 + 3600);  // the first counts half by now
  auto e = s.find("192.0.2.1", 443);
  ASSERT_TRUE(e);
  EXPECT_DOUBLE_EQ(e->failures, 1.5);
  EXPECT_FALSE(e->listed);
  s.recordSuccess("192.0.2.1", 443, true, 80, 5000);
  s.recordSuccess("192.0.2.1", 443, true, 0, 5000);
  e = s.find("192.0.2.1", 443);
  EXPECT_DOUBLE_EQ(e->successes, 2);
  EXPECT_DOUBLE_EQ(e->rtt_ms, 70);  // smoothed by 1/8: 80 + (0 - 80) / 8
}

TEST(Store, ARefreshReplacesTheListAndKeepsHistory) {
  TempDb t;
  Store s(t.path());
  s.replaceNodes({{"192.0.2.1", 443, true}, {"192.0.2.2", 443, true}}, 7, 600, 1000);
  s.recordFailure("192.0.2.1", 443, true, 1001);
  s.replaceNodes({{"192.0.2.2", 443, true}, {"192.0.2.3", 8443, false}}, 8, 300, 2000);
  auto listed = s.listed();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].host, "192.0.2.2");
  EXPECT_EQ(listed[1].port, 8443);
  EXPECT_FALSE(listed[1].tls);
  // No longer listed, but its record stays (it failed); 192.0.2.2 carried none and stays listed.
  auto gone = s.find("192.0.2.1", 443);
  ASSERT_TRUE(gone);
  EXPECT_FALSE(gone->listed);
  auto meta = s.nodesMeta();
  ASSERT_TRUE(meta);
  EXPECT_EQ(meta->version, 8u);
  EXPECT_EQ(meta->ttl_s, 300);
  EXPECT_EQ(meta->refreshed_at, 2000);
  EXPECT_EQ(s.forget("192.0.2.1", 443), 1);
  EXPECT_EQ(s.forget("192.0.2.1", 443), 0);
  EXPECT_EQ(s.forgetAll(), 2);
  EXPECT_FALSE(s.nodesMeta());
}

TEST(Store, DnsAnswersRoundTrip) {
  TempDb t;
  Store s(t.path());
  s.saveDns({"gw.example", {"192.0.2.1", "2001:db8::1"}, 1000, 30});
  auto a = s.dns("gw.example");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->addresses, (std::vector<std::string>{"192.0.2.1", "2001:db8::1"}));
  EXPECT_EQ(a->ttl_s, 30);
  EXPECT_FALSE(s.dns("other.example"));
}

TEST(Store, GarbageIsMovedAsideAndANewFileMade) {
  TempDb t;
  { std::ofstream(t.path()) << std::string(5000, 'x'); }
  Store s(t.path());
  EXPECT_NE(s.recovered().find("moved it to"), std::string::npos) << s.recovered();
  EXPECT_EQ(s.schemaVersion(), Store::kSchemaVersion);
  s.replaceNodes({{"192.0.2.1", 443, true}}, 1, 60, 1);
  EXPECT_EQ(s.listed().size(), 1u);
}

TEST(Store, AFolderThatCannotBeMadeIsAnError) {
  EXPECT_THROW(Store("/proc/no/such/ns.db"), StoreError);
}

Candidate candidate(const char* host, double score, bool stale) {
  Candidate c;
  c.endpoint = {host, 443, true};
  c.score = score;
  c.stale = stale;
  return c;
}

TEST(Rank, AStaleCandidateNeverLeadsWhileAFreshOneExists) {
  std::vector<Candidate> v = {candidate("192.0.2.1", 50, false), candidate("192.0.2.2", 200, true),
                              candidate("192.0.2.3", 70, false)};
  Resolver::rankStaleLast(v);
  EXPECT_EQ(v[0].endpoint.host, "192.0.2.3");  // the best fresh one
  EXPECT_EQ(v[1].endpoint.host, "192.0.2.2");  // the stale one still races, second
  EXPECT_EQ(v[2].endpoint.host, "192.0.2.1");
}

TEST(Rank, OnlyStaleCandidatesAreStillTried) {
  std::vector<Candidate> v = {candidate("192.0.2.1", 10, true), candidate("192.0.2.2", 20, true)};
  Resolver::rankStaleLast(v);
  EXPECT_EQ(v[0].endpoint.host, "192.0.2.2");
  EXPECT_EQ(v.size(), 2u);
}

TEST(Endpoint, ParsesNumericAddressesOnly) {
  EXPECT_EQ(parseEndpoint("192.0.2.1:443")->toString(), "192.0.2.1:443");
  EXPECT_EQ(parseEndpoint("[2001:db8::1]:8443")->toString(), "[2001:db8::1]:8443");
  for (const char* bad : {"gw.example:443", "192.0.2.1", "192.0.2.1:0", "192.0.2.1:70000", "[::1]443", "2001:db8::1:443"})
    EXPECT_FALSE(parseEndpoint(bad)) << bad;
}

}  // namespace
}  // namespace dingo::ns
