// fuzz_store_rows: what dingo-nsclient's Store (nsclient/include/dingo/nsclient/Store.h)
// reads back from its SQLite file: endpoint rows, the node-list meta and the DNS answers.
// The file is shared by every client process of a user and outlives versions of the
// program, so its rows are input too. Each run writes fuzzed rows, of any SQLite type,
// into the store's own tables (through a second connection, as another process would),
// then has the store read them. StoreError is the store's way to refuse; any other
// exception or a crash is a finding.
#include <fuzzer/FuzzedDataProvider.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <typeinfo>

#include "dingo/nsclient/Store.h"
#include "tests/fuzz/FuzzCheck.h"

namespace {

struct Files {
  std::string dir;
  std::unique_ptr<dingo::ns::Store> store;  // made first: it creates the schema
  sqlite3* db = nullptr;                    // the other writer

  Files() {
    char tmpl[] = "/dev/shm/dingo-fuzz-store-XXXXXX";
    char* made = ::mkdtemp(tmpl);
    if (!made) {
      std::strcpy(tmpl, "/tmp/dingo-fuzz-store-XXXXXX");
      made = ::mkdtemp(tmpl);
    }
    FUZZ_CHECK(made);
    dir = made;
    store = std::make_unique<dingo::ns::Store>(dir + "/nodes.db");
    FUZZ_CHECK(sqlite3_open_v2((dir + "/nodes.db").c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
  }
  ~Files() {
    sqlite3_close_v2(db);
    store.reset();
    for (const char* f : {"/nodes.db", "/nodes.db-wal", "/nodes.db-shm"}) ::unlink((dir + f).c_str());
    ::rmdir(dir.c_str());
  }
};

Files& files() {
  static Files f;
  return f;
}

// Binds one value of a type the fuzzer picks: SQLite keeps whatever it is given.
void bindAny(sqlite3_stmt* s, int i, FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 4)) {
    case 0: sqlite3_bind_int64(s, i, in.ConsumeIntegral<int64_t>()); break;
    case 1: sqlite3_bind_double(s, i, in.ConsumeFloatingPoint<double>()); break;
    case 2: {
      std::string t = in.ConsumeRandomLengthString(64);
      sqlite3_bind_text(s, i, t.data(), static_cast<int>(t.size()), SQLITE_TRANSIENT);
      break;
    }
    case 3: {
      std::string b = in.ConsumeRandomLengthString(64);
      sqlite3_bind_blob(s, i, b.data(), static_cast<int>(b.size()), SQLITE_TRANSIENT);
      break;
    }
    default: sqlite3_bind_null(s, i); break;
  }
}

// Runs `sql` once per row with `columns` fuzzed values; rows the schema refuses are skipped.
void insertRows(sqlite3* db, const char* sql, int columns, FuzzedDataProvider& in) {
  sqlite3_stmt* s = nullptr;
  FUZZ_CHECK(sqlite3_prepare_v2(db, sql, -1, &s, nullptr) == SQLITE_OK);
  int rows = in.ConsumeIntegralInRange<int>(0, 4);
  for (int r = 0; r < rows; ++r) {
    sqlite3_reset(s);
    for (int c = 1; c <= columns; ++c) bindAny(s, c, in);
    sqlite3_step(s);
  }
  sqlite3_finalize(s);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Files& f = files();
  FuzzedDataProvider in(data, size);
  FUZZ_CHECK(sqlite3_exec(f.db, "BEGIN; DELETE FROM endpoints; DELETE FROM meta; DELETE FROM dns;", nullptr,
                          nullptr, nullptr) == SQLITE_OK);
  insertRows(f.db,
             "INSERT OR REPLACE INTO endpoints(host, port, tls, listed, listed_at, successes, failures,"
             " last_success, last_failure, rtt_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
             10, in);
  // The meta keys the store reads, with values of any type.
  for (const char* key : {"nodes_version", "nodes_ttl_s", "nodes_refreshed_at"}) {
    if (!in.ConsumeBool()) continue;
    sqlite3_stmt* s = nullptr;
    FUZZ_CHECK(sqlite3_prepare_v2(f.db, "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)", -1, &s,
                                  nullptr) == SQLITE_OK);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    bindAny(s, 2, in);
    sqlite3_step(s);
    sqlite3_finalize(s);
  }
  std::string name = in.ConsumeRandomLengthString(16);
  sqlite3_stmt* s = nullptr;
  FUZZ_CHECK(sqlite3_prepare_v2(f.db, "INSERT OR REPLACE INTO dns(name, addresses, resolved_at, ttl_s)"
                                      " VALUES(?1, ?2, ?3, ?4)", -1, &s, nullptr) == SQLITE_OK);
  sqlite3_bind_text(s, 1, name.data(), static_cast<int>(name.size()), SQLITE_TRANSIENT);
  for (int c = 2; c <= 4; ++c) bindAny(s, c, in);
  sqlite3_step(s);
  sqlite3_finalize(s);
  FUZZ_CHECK(sqlite3_exec(f.db, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);

  try {
    const auto& store = *f.store;
    auto all = store.endpoints();
    auto listed = store.listed();
    FUZZ_CHECK(listed.size() <= all.size());
    for (const auto& e : all) (void)store.find(e.host, e.port);
    (void)store.nodesMeta();
    (void)store.dns(name);
    if (!all.empty()) {
      f.store->recordSuccess(all[0].host, all[0].port, all[0].tls, 12.5, 1'700'000'000);
      f.store->recordFailure(all[0].host, all[0].port, all[0].tls, 1'700'000'000);
    }
  } catch (const dingo::ns::StoreError&) {
    // Refused with a message: the store's contract.
  } catch (const std::exception& e) {
    std::fprintf(stderr, "Store threw %s, not StoreError: %s\n", typeid(e).name(), e.what());
    std::abort();
  }
  return 0;
}
