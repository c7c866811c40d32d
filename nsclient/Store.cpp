#include "dingo/nsclient/Store.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <charconv>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <thread>
#include <nlohmann/json.hpp>

namespace dingo::ns {

namespace {

// PRAGMA journal_mode=WAL retried on SQLITE_BUSY: 50 tries 100 ms apart, the 5 s busy timeout.
constexpr int kWalTries = 50;
constexpr int kWalRetryMs = 100;

// One prepared statement, finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK)
      throw StoreError(std::string("SQLite: ") + sqlite3_errmsg(db) + " in: " + sql);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Stmt& bind(int i, double v) {
    sqlite3_bind_double(stmt_, i, v);
    return *this;
  }
  // true: a row is ready; false: done.
  bool step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw StoreError(std::string("SQLite: ") + sqlite3_errmsg(db_));
  }
  int64_t i64(int col) const { return sqlite3_column_int64(stmt_, col); }
  double dbl(int col) const { return sqlite3_column_double(stmt_, col); }
  std::string text(int col) const {
    const auto* p = sqlite3_column_text(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string();
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

// Schema migrations: entry i takes the file from version i to i + 1, in one transaction.
// Version 1 kept only the node list; version 2 keeps every endpoint's history and the
// DNS answers.
const char* const kMigrations[] = {
    // 0 -> 1
    "CREATE TABLE nodes(host TEXT NOT NULL, port INTEGER NOT NULL, tls INTEGER NOT NULL DEFAULT 1,"
    " listed_at INTEGER NOT NULL, PRIMARY KEY(host, port));"
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // 1 -> 2
    "CREATE TABLE endpoints(host TEXT NOT NULL, port INTEGER NOT NULL, tls INTEGER NOT NULL DEFAULT 1,"
    " listed INTEGER NOT NULL DEFAULT 0, listed_at INTEGER NOT NULL DEFAULT 0,"
    " successes REAL NOT NULL DEFAULT 0, failures REAL NOT NULL DEFAULT 0,"
    " last_success INTEGER NOT NULL DEFAULT 0, last_failure INTEGER NOT NULL DEFAULT 0,"
    " rtt_ms REAL NOT NULL DEFAULT 0, PRIMARY KEY(host, port));"
    "INSERT INTO endpoints(host, port, tls, listed, listed_at) SELECT host, port, tls, 1, listed_at FROM nodes;"
    "DROP TABLE nodes;"
    "CREATE TABLE dns(name TEXT PRIMARY KEY, addresses TEXT NOT NULL, resolved_at INTEGER NOT NULL,"
    " ttl_s INTEGER NOT NULL);",
};
static_assert(std::size(kMigrations) == Store::kSchemaVersion);

constexpr const char* kColumns =
    "host, port, tls, listed, listed_at, successes, failures, last_success, last_failure, rtt_ms";

StoredEndpoint rowToEndpoint(const Stmt& s) {
  StoredEndpoint e;
  e.host = s.text(0);
  e.port = static_cast<uint16_t>(s.i64(1));
  e.tls = s.i64(2) != 0;
  e.listed = s.i64(3) != 0;
  e.listed_at = s.i64(4);
  e.successes = s.dbl(5);
  e.failures = s.dbl(6);
  e.last_success = s.i64(7);
  e.last_failure = s.i64(8);
  e.rtt_ms = s.dbl(9);
  return e;
}

bool corruptCode(int rc) {
  rc &= 0xff;
  return rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB || rc == SQLITE_CANTOPEN || rc == SQLITE_IOERR ||
         rc == SQLITE_FORMAT;
}

class OpenFailed : public StoreError {
 public:
  OpenFailed(const std::string& what, int rc) : StoreError(what), rc(rc) {}
  int rc;
};

}  // namespace

Store::Store(const std::string& path) : path_(path) {
  std::error_code ec;
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  try {
    open();
  } catch (const OpenFailed& e) {
    if (!corruptCode(e.rc) || ::access(path.c_str(), F_OK) != 0) throw StoreError(path + ": " + e.what());
    moveAside(e.what());
    open();
  }
}

Store::~Store() { sqlite3_close_v2(db_); }

void Store::open() {
  if (db_) {
    sqlite3_close_v2(db_);
    db_ = nullptr;
  }
  int rc = sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  auto fail = [&](const std::string& what) {
    std::string msg = what + ": " + (db_ ? sqlite3_errmsg(db_) : "out of memory");
    int code = db_ ? sqlite3_extended_errcode(db_) : rc;
    sqlite3_close_v2(db_);
    db_ = nullptr;
    throw OpenFailed(msg, code);
  };
  if (rc != SQLITE_OK) fail("opening");
  sqlite3_busy_timeout(db_, 5000);
  // Switching to WAL (or finding it on while another connection of this process or
  // another one recovers or checkpoints) can answer SQLITE_BUSY without consulting the
  // busy handler: try again for as long as the busy timeout.
  for (int tries = 0;; ++tries) {
    rc = sqlite3_exec(db_, "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) break;
    if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || tries >= kWalTries) fail("WAL mode");
    std::this_thread::sleep_for(std::chrono::milliseconds(kWalRetryMs));
  }
  // Reads every page: a damaged file shows here, not in the middle of a refresh.
  sqlite3_stmt* check = nullptr;
  if (sqlite3_prepare_v2(db_, "PRAGMA quick_check", -1, &check, nullptr) != SQLITE_OK) fail("checking");
  rc = sqlite3_step(check);
  std::string verdict = rc == SQLITE_ROW && sqlite3_column_text(check, 0)
                            ? reinterpret_cast<const char*>(sqlite3_column_text(check, 0))
                            : "";
  sqlite3_finalize(check);
  if (rc != SQLITE_ROW) fail("checking");
  if (verdict != "ok") {
    sqlite3_close_v2(db_);
    db_ = nullptr;
    throw OpenFailed("quick_check: " + verdict, SQLITE_CORRUPT);
  }
  try {
    migrate();
  } catch (const StoreError& e) {
    int code = sqlite3_extended_errcode(db_);
    sqlite3_close_v2(db_);
    db_ = nullptr;
    throw OpenFailed(e.what(), corruptCode(code) ? code : SQLITE_CORRUPT);
  }
}

void Store::moveAside(const std::string& why) {
  // Never over an earlier one: two damaged files within a second get .corrupt-T, .corrupt-T.1...
  std::string base = path_ + ".corrupt-" + std::to_string(std::time(nullptr)), aside = base;
  for (int n = 1; ::access(aside.c_str(), F_OK) == 0; ++n) aside = base + "." + std::to_string(n);
  if (::rename(path_.c_str(), aside.c_str()) != 0)
    throw StoreError(path_ + " is unreadable (" + why + ") and cannot be moved aside: " + std::strerror(errno));
  for (const char* ext : {"-wal", "-shm"}) {
    std::string from = path_ + ext, to = aside + ext;
    ::rename(from.c_str(), to.c_str());
  }
  recovered_ = path_ + " was unreadable (" + why + "); moved it to " + aside + " and started a new one";
}

void Store::exec(const char* sql) const {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    throw StoreError("SQLite: " + msg);
  }
}

template <typename Fn>
void Store::transaction(Fn fn) {
  // IMMEDIATE takes the write lock up front (waiting up to the busy timeout), so two
  // processes never deadlock upgrading read locks.
  exec("BEGIN IMMEDIATE");
  try {
    fn();
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

int Store::schemaVersion() const {
  Stmt s(db_, "PRAGMA user_version");
  return s.step() ? static_cast<int>(s.i64(0)) : 0;
}

void Store::migrate() {
  if (schemaVersion() >= kSchemaVersion) {
    if (schemaVersion() > kSchemaVersion)
      throw StoreError("schema version " + std::to_string(schemaVersion()) + " is newer than this program's " +
                       std::to_string(kSchemaVersion));
    return;
  }
  transaction([&] {
    // Read again under the write lock: another process may have migrated meanwhile.
    for (int v = schemaVersion(); v < kSchemaVersion; ++v) {
      exec(kMigrations[v]);
      exec(("PRAGMA user_version = " + std::to_string(v + 1)).c_str());
    }
  });
}

double Store::decayed(double count, int64_t at, int64_t now) {
  if (count <= 0 || at <= 0 || now <= at) return count;
  return count * std::exp2(-static_cast<double>(now - at) / kHalfLifeS);
}

void Store::replaceNodes(const std::vector<Node>& nodes, uint64_t version, int64_t ttl_s, int64_t now) {
  transaction([&] {
    exec("UPDATE endpoints SET listed = 0");
    for (const auto& n : nodes) {
      Stmt s(db_,
             "INSERT INTO endpoints(host, port, tls, listed, listed_at) VALUES(?1, ?2, ?3, 1, ?4)"
             " ON CONFLICT(host, port) DO UPDATE SET tls = ?3, listed = 1, listed_at = ?4");
      s.bind(1, n.host).bind(2, int64_t{n.port}).bind(3, int64_t{n.tls}).bind(4, now).step();
    }
    // Unlisted endpoints with no history left are of no use.
    exec("DELETE FROM endpoints WHERE listed = 0 AND successes = 0 AND failures = 0");
    for (auto [k, v] : {std::pair<const char*, std::string>{"nodes_version", std::to_string(version)},
                        {"nodes_ttl_s", std::to_string(ttl_s)},
                        {"nodes_refreshed_at", std::to_string(now)}}) {
      Stmt m(db_, "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)");
      m.bind(1, std::string(k)).bind(2, v).step();
    }
  });
}

std::optional<NodesMeta> Store::nodesMeta() const {
  Stmt s(db_, "SELECT key, value FROM meta WHERE key LIKE 'nodes_%'");
  NodesMeta m;
  bool any = false;
  // A value that is not a whole decimal number (another program wrote it, or a disk
  // did) reads as 0, as if never stored: the list is then refreshed at once.
  auto number = [](const std::string& v, auto& out) {
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    if (ec != std::errc() || end != v.data() + v.size()) out = 0;
  };
  while (s.step()) {
    std::string k = s.text(0), v = s.text(1);
    any = true;
    if (k == "nodes_version") number(v, m.version);
    else if (k == "nodes_ttl_s") number(v, m.ttl_s);
    else if (k == "nodes_refreshed_at") number(v, m.refreshed_at);
  }
  if (!any) return std::nullopt;
  return m;
}

std::vector<StoredEndpoint> Store::endpoints() const {
  Stmt s(db_, (std::string("SELECT ") + kColumns + " FROM endpoints ORDER BY listed DESC, host, port").c_str());
  std::vector<StoredEndpoint> out;
  while (s.step()) out.push_back(rowToEndpoint(s));
  return out;
}

std::vector<StoredEndpoint> Store::listed() const {
  Stmt s(db_, (std::string("SELECT ") + kColumns + " FROM endpoints WHERE listed = 1 ORDER BY host, port").c_str());
  std::vector<StoredEndpoint> out;
  while (s.step()) out.push_back(rowToEndpoint(s));
  return out;
}

std::optional<StoredEndpoint> Store::find(const std::string& host, uint16_t port) const {
  Stmt s(db_, (std::string("SELECT ") + kColumns + " FROM endpoints WHERE host = ?1 AND port = ?2").c_str());
  s.bind(1, host).bind(2, int64_t{port});
  if (!s.step()) return std::nullopt;
  return rowToEndpoint(s);
}

void Store::recordSuccess(const std::string& host, uint16_t port, bool tls, double rtt_ms, int64_t now) {
  transaction([&] {
    auto cur = find(host, port);
    double successes = (cur ? decayed(cur->successes, cur->last_success, now) : 0) + 1;
    // Smoothed like TCP's SRTT (1/8 of each new sample).
    double rtt = cur && cur->rtt_ms > 0 ? cur->rtt_ms + (rtt_ms - cur->rtt_ms) / 8 : rtt_ms;
    Stmt s(db_,
           "INSERT INTO endpoints(host, port, tls, successes, last_success, rtt_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6)"
           " ON CONFLICT(host, port) DO UPDATE SET successes = ?4, last_success = ?5, rtt_ms = ?6");
    s.bind(1, host).bind(2, int64_t{port}).bind(3, int64_t{tls}).bind(4, successes).bind(5, now).bind(6, rtt).step();
  });
}

void Store::recordFailure(const std::string& host, uint16_t port, bool tls, int64_t now) {
  transaction([&] {
    auto cur = find(host, port);
    double failures = (cur ? decayed(cur->failures, cur->last_failure, now) : 0) + 1;
    Stmt s(db_,
           "INSERT INTO endpoints(host, port, tls, failures, last_failure) VALUES(?1, ?2, ?3, ?4, ?5)"
           " ON CONFLICT(host, port) DO UPDATE SET failures = ?4, last_failure = ?5");
    s.bind(1, host).bind(2, int64_t{port}).bind(3, int64_t{tls}).bind(4, failures).bind(5, now).step();
  });
}

void Store::saveDns(const DnsAnswer& a) {
  transaction([&] {
    Stmt s(db_, "INSERT OR REPLACE INTO dns(name, addresses, resolved_at, ttl_s) VALUES(?1, ?2, ?3, ?4)");
    s.bind(1, a.name).bind(2, nlohmann::json(a.addresses).dump()).bind(3, a.resolved_at).bind(4, a.ttl_s).step();
  });
}

std::optional<DnsAnswer> Store::dns(const std::string& name) const {
  Stmt s(db_, "SELECT addresses, resolved_at, ttl_s FROM dns WHERE name = ?1");
  s.bind(1, name);
  if (!s.step()) return std::nullopt;
  DnsAnswer a;
  a.name = name;
  auto j = nlohmann::json::parse(s.text(0), nullptr, false);
  if (j.is_array())
    for (const auto& x : j)
      if (x.is_string()) a.addresses.push_back(x.get<std::string>());
  a.resolved_at = s.i64(1);
  a.ttl_s = s.i64(2);
  return a;
}

int Store::forget(const std::string& host, uint16_t port) {
  int n = 0;
  transaction([&] {
    Stmt s(db_, "DELETE FROM endpoints WHERE host = ?1 AND port = ?2");
    s.bind(1, host).bind(2, int64_t{port}).step();
    n = sqlite3_changes(db_);
  });
  return n;
}

int Store::forgetAll() {
  int n = 0;
  transaction([&] {
    exec("DELETE FROM endpoints");
    n = sqlite3_changes(db_);
    exec("DELETE FROM dns; DELETE FROM meta;");
  });
  return n;
}

}  // namespace dingo::ns
