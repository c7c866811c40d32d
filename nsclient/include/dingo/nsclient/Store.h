#pragma once
// The SQLite file where a client keeps what it learned about gateways: the node list
// from GET /v1/nodes, the last DNS answers (with their TTL), and each endpoint's record
// of successes, failures and round-trip time. Several processes may share one file:
// WAL mode, a busy timeout, and every write in one IMMEDIATE transaction. A file that is
// corrupt or not a database is moved aside and rebuilt; the store never crashes on it.
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

struct sqlite3;

namespace dingo::ns {

struct Node {
  std::string host;  // numeric IP
  uint16_t port = 0;
  bool tls = true;
};

// One endpoint as the store knows it.
struct StoredEndpoint {
  std::string host;
  uint16_t port = 0;
  bool tls = true;
  bool listed = false;        // in the last /v1/nodes list
  int64_t listed_at = 0;      // unix seconds of the refresh that listed it
  double successes = 0;       // decayed counts (see Store::kHalfLifeS)
  double failures = 0;
  int64_t last_success = 0;   // unix seconds, 0 = never
  int64_t last_failure = 0;
  double rtt_ms = 0;          // smoothed, 0 = unknown
};

// The answer of one DNS name, as last resolved.
struct DnsAnswer {
  std::string name;
  std::vector<std::string> addresses;
  int64_t resolved_at = 0;
  int64_t ttl_s = 0;
};

struct NodesMeta {
  uint64_t version = 0;
  int64_t ttl_s = 0;
  int64_t refreshed_at = 0;  // unix seconds
};

class StoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Store {
 public:
  static constexpr int kSchemaVersion = 2;
  static constexpr double kHalfLifeS = 3600;  // successes and failures count half after an hour

  // Opens or creates `path`. A corrupt file is renamed to PATH.corrupt-UNIXTIME (with its
  // -wal and -shm) and a new one made; recovered() then says what happened. Throws
  // StoreError only when even a new file cannot be created (a missing folder, no
  // permission).
  explicit Store(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::string& path() const { return path_; }
  // Non-empty when the file was unreadable and rebuilt: what was wrong, where it went.
  const std::string& recovered() const { return recovered_; }
  int schemaVersion() const;

  // The stored node list replaced by `nodes`, in one transaction: new ones added, ones no
  // longer listed dropped from the list (their history stays), the meta updated.
  void replaceNodes(const std::vector<Node>& nodes, uint64_t version, int64_t ttl_s, int64_t now);
  std::optional<NodesMeta> nodesMeta() const;

  // Every endpoint with a record (listed or not), listed ones first.
  std::vector<StoredEndpoint> endpoints() const;
  std::vector<StoredEndpoint> listed() const;
  std::optional<StoredEndpoint> find(const std::string& host, uint16_t port) const;

  void recordSuccess(const std::string& host, uint16_t port, bool tls, double rtt_ms, int64_t now);
  void recordFailure(const std::string& host, uint16_t port, bool tls, int64_t now);

  void saveDns(const DnsAnswer& answer);
  std::optional<DnsAnswer> dns(const std::string& name) const;

  // Removes an endpoint (list entry and history). Returns how many rows went.
  int forget(const std::string& host, uint16_t port);
  int forgetAll();  // the list, the history and the DNS answers

  // A count decayed from `at` to `now`.
  static double decayed(double count, int64_t at, int64_t now);

 private:
  void open();
  void migrate();
  void exec(const char* sql) const;
  template <typename Fn>
  void transaction(Fn fn);
  void moveAside(const std::string& why);

  std::string path_;
  std::string recovered_;
  sqlite3* db_ = nullptr;
};

}  // namespace dingo::ns
