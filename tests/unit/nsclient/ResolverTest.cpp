// parseNodeList: the GET /v1/nodes document as dingo-nsclient reads it, including the
// cases the fuzz_nodes fuzzer found.
#include <gtest/gtest.h>

#include "dingo/nsclient/Resolver.h"

namespace dingo::ns {
namespace {

TEST(NodeList, KeepsNumericAddressesWithAPort) {
  auto list = parseNodeList(R"({"version":12,"ttl_s":600,"nodes":[{"host":"192.0.2.1","port":443},
      {"host":"2001:db8::1","port":8443,"tls":false},{"host":"example.com","port":443},
      {"host":"192.0.2.2","port":0},{"host":"192.0.2.3","port":65536},7,null]})");
  ASSERT_TRUE(list);
  EXPECT_EQ(list->version, 12u);
  EXPECT_EQ(list->ttl_s, 600);
  ASSERT_EQ(list->nodes.size(), 2u);
  EXPECT_EQ(list->nodes[0].host, "192.0.2.1");
  EXPECT_TRUE(list->nodes[0].tls);
  EXPECT_EQ(list->nodes[1].host, "2001:db8::1");
  EXPECT_EQ(list->nodes[1].port, 8443);
  EXPECT_FALSE(list->nodes[1].tls);
}

TEST(NodeList, RefusesWhatIsNotANodeList) {
  EXPECT_FALSE(parseNodeList(""));
  EXPECT_FALSE(parseNodeList("[]"));
  EXPECT_FALSE(parseNodeList(R"({"version":"1","ttl_s":60,"nodes":[]})"));
  EXPECT_FALSE(parseNodeList(R"({"version":1,"ttl_s":60,"nodes":{}})"));
  EXPECT_FALSE(parseNodeList(R"({"version":-1,"ttl_s":60,"nodes":[]})"));
}

TEST(NodeList, AFreshListLivesAtLeastASecond) {
  auto list = parseNodeList(R"({"version":1,"ttl_s":-5,"nodes":[]})");
  ASSERT_TRUE(list);
  EXPECT_EQ(list->ttl_s, 1);
}

// fuzz_nodes: a "tls" that is not a boolean made nlohmann's value() throw type_error out
// of Resolver::refresh(), and `dingo-nsclient refresh` died on any gateway that sent one.
TEST(NodeList, AnEntryWithANonBooleanTlsIsSkipped) {
  std::optional<NodeList> list;
  ASSERT_NO_THROW(list = parseNodeList(
                      R"({"version":12,"ttl_s":600,"nodes":[{"host":"193.0.2.1","port":443,"tls":true},)"
                      R"({"host":"198.51.100.7","port":80,"tls":"tls"}]})"));
  ASSERT_TRUE(list);
  ASSERT_EQ(list->nodes.size(), 1u);
  EXPECT_EQ(list->nodes[0].host, "193.0.2.1");
}

}  // namespace
}  // namespace dingo::ns
