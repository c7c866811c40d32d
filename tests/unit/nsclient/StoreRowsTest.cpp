// What the store reads back from rows it did not write itself (another process, an
// older or newer program, a damaged disk): cases the fuzz_store_rows fuzzer found.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "dingo/nsclient/Store.h"

namespace dingo::ns {
namespace {

class StoreFile {
 public:
  StoreFile() {
    char tmpl[] = "/tmp/dingo-store-rows-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  ~StoreFile() { std::filesystem::remove_all(dir_); }
  std::string path() const { return dir_ + "/ns.db"; }
  // Runs SQL on the file through a connection of its own, as another process would.
  void exec(const std::string& sql) const {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path().c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    std::string what = err ? err : "";
    sqlite3_free(err);
    sqlite3_close(db);
    ASSERT_EQ(rc, SQLITE_OK) << what;
  }

 private:
  std::string dir_;
};

// fuzz_store_rows, first run: std::stoull threw std::invalid_argument out of nodesMeta(),
// through Resolver::candidates(), and dingo-nsclient died on a meta value that is not a
// number.
TEST(StoreRows, MetaValuesThatAreNotNumbersReadAsUnset) {
  StoreFile f;
  Store s(f.path());
  s.replaceNodes({{"192.0.2.1", 443, true}}, 7, 600, 1'700'000'000);
  f.exec("UPDATE meta SET value = 'abc' WHERE key = 'nodes_version';"
         "UPDATE meta SET value = '99999999999999999999999' WHERE key = 'nodes_ttl_s';"
         "UPDATE meta SET value = X'00' WHERE key = 'nodes_refreshed_at';");
  std::optional<NodesMeta> m;
  ASSERT_NO_THROW(m = s.nodesMeta());
  ASSERT_TRUE(m);
  EXPECT_EQ(m->version, 0u);
  EXPECT_EQ(m->ttl_s, 0);
  EXPECT_EQ(m->refreshed_at, 0);
}

TEST(StoreRows, MetaValuesStillReadWhenWellFormed) {
  StoreFile f;
  Store s(f.path());
  s.replaceNodes({}, 18446744073709551615u, 600, 1'700'000'000);
  auto m = s.nodesMeta();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->version, 18446744073709551615u);
  EXPECT_EQ(m->ttl_s, 600);
  EXPECT_EQ(m->refreshed_at, 1'700'000'000);
}

}  // namespace
}  // namespace dingo::ns
