#include "core/Tls.h"

#include <gtest/gtest.h>

using namespace dingo;

TEST(TicketKeyRing, RotationKeepsTheNewestThree) {
  TicketKeyRing ring;
  EXPECT_EQ(ring.current(), nullptr);
  std::vector<TicketKey> made;
  for (int i = 0; i < 5; ++i) {
    made.push_back(generateTicketKey());
    ring.rotate(made.back());
  }
  ASSERT_EQ(ring.size(), TicketKeyRing::kKeep);
  EXPECT_EQ(ring.current()->name, made[4].name);
  bool current = false;
  ASSERT_NE(ring.find(made[4].name.data(), &current), nullptr);
  EXPECT_TRUE(current);
  ASSERT_NE(ring.find(made[2].name.data(), &current), nullptr);  // still decrypts
  EXPECT_FALSE(current);                                          // but is renewed
  EXPECT_EQ(ring.find(made[1].name.data(), &current), nullptr);  // expired
}

TEST(TicketKeyRing, SerializesForTheWorkers) {
  TicketKeyRing ring;
  ring.rotate(generateTicketKey());
  ring.rotate(generateTicketKey());
  auto keys = TicketKeyRing::parse(ring.serialize());
  ASSERT_TRUE(keys);
  TicketKeyRing copy;
  copy.set(*keys);
  EXPECT_EQ(copy.serialize(), ring.serialize());
  EXPECT_FALSE(TicketKeyRing::parse(""));
  EXPECT_FALSE(TicketKeyRing::parse(std::string(79, 'x')));
  EXPECT_FALSE(TicketKeyRing::parse(std::string(80 * 4, 'x')));
}

TEST(TicketKeyRing, KeysAreRandom) {
  EXPECT_NE(generateTicketKey().aes, generateTicketKey().aes);
}
