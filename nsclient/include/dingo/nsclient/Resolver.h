#pragma once
// Finding a live gateway. Candidates come from four sources: the primary domain and the
// backup domain (DNS, through c-ares, answers kept with their TTL), the stored node list
// (GET /v1/nodes, refreshed at about 75% of its TTL) and seed endpoints. They are ranked
// (source, staleness, decayed successes and failures, round-trip time) and raced in the
// manner of Happy Eyeballs (RFC 8305): the next attempt starts a stagger after the
// previous one, or at once when it fails; the first to finish wins and the others are
// dropped. An attempt succeeds only after the TLS handshake, verified against the
// service's domain name even when dialled by IP, and the gateway's answer.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dingo/nsclient/Store.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace dingo::ns {

enum class Source { Primary, Backup, Store, Seed };
const char* sourceName(Source s);

struct Endpoint {
  std::string host;  // numeric IP
  uint16_t port = 0;
  bool tls = true;
  std::string toString() const;  // "192.0.2.1:443" or "[2001:db8::1]:443"
};

// "IP:PORT" or "[IPv6]:PORT"; nullopt when it is not one.
std::optional<Endpoint> parseEndpoint(std::string_view text, bool tls = true);

// A GET /v1/nodes answer: {"version":N,"ttl_s":N,"nodes":[{"host":IP,"port":N,"tls":B}]}.
struct NodeList {
  uint64_t version = 0;
  int64_t ttl_s = 1;        // at least 1
  std::vector<Node> nodes;  // only numeric IPs with a port in 1-65535; other entries skipped
};
// nullopt when `body` is not a node list.
std::optional<NodeList> parseNodeList(std::string_view body);

struct Candidate {
  Endpoint endpoint;
  Source source = Source::Seed;
  double age_s = 0;  // since the DNS answer or the node list was fetched (0 for seeds)
  bool stale = false;  // past its TTL: may join the race, never alone while a fresh one exists
  double score = 0;
};

struct Options {
  std::string db_path;          // the SQLite store
  std::string primary;          // DNS names
  std::string backup;
  uint16_t port = 443;          // for DNS answers
  std::vector<Endpoint> seeds;  // tried last
  std::string dns_server;       // "IP:PORT" to ask instead of the system's resolver
  std::string ca_file;          // trust this CA (else the system's store)
  std::string server_name;      // the TLS name to verify; default: primary
  bool tls = true;              // dial DNS answers and seeds with TLS
  std::chrono::milliseconds stagger{250};           // RFC 8305's connection attempt delay, kept in [100 ms, 2 s]
  std::chrono::milliseconds attempt_timeout{5000};  // connect + TLS + answer, per attempt
  std::chrono::milliseconds dns_timeout{1000};      // both names, asked together
};

// The result of asking DNS for a name's A and AAAA records.
struct DnsResult {
  std::vector<std::string> addresses;
  int64_t ttl_s = 0;
  std::string error;  // empty on success
};

// Looks up `names` at once (one c-ares channel), each with A and AAAA, within `timeout`.
// `server` is "IP:PORT" or empty for the system's configuration.
std::vector<DnsResult> lookup(const std::vector<std::string>& names, const std::string& server,
                              std::chrono::milliseconds timeout);

// A connection that won a race: TLS done (when TLS), the request sent and the answer's
// head read. Blocking helpers with deadlines; closes on destruction.
class Connection {
 public:
  Connection(int fd, SSL* ssl, Candidate c);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const Candidate& candidate() const { return candidate_; }
  double rttMs() const { return rtt_ms_; }
  int status() const { return status_; }
  const std::string& head() const { return head_; }
  int fd() const { return fd_; }

  // Writes everything within `timeout`; false on error or timeout.
  bool writeAll(std::string_view data, std::chrono::milliseconds timeout);
  // What readSome() returns when it read nothing and the stream has not ended.
  static constexpr long kReadFailed = -1;
  static constexpr long kReadTimedOut = -2;
  // Reads what is available, waiting up to `timeout`: > 0 bytes, 0 end of stream,
  // kReadFailed or kReadTimedOut. Bytes left over after the answer's head come first.
  long readSome(char* buf, size_t len, std::chrono::milliseconds timeout);
  // The rest of a Content-Length body (at most `max` bytes); nullopt on error.
  std::optional<std::string> readBody(size_t max, std::chrono::milliseconds timeout);

 private:
  friend class Racer;
  int fd_;
  SSL* ssl_;
  Candidate candidate_;
  double rtt_ms_ = 0;
  int status_ = 0;
  std::string head_;
  std::string leftover_;
};

// What one attempt of a race did.
struct Attempt {
  Candidate candidate;
  bool ok = false;
  double ms = 0;      // from its start to its answer or failure
  std::string error;  // why it failed, or "abandoned" when another won first
};

struct RefreshResult {
  bool ok = false;
  bool changed = false;
  uint64_t version = 0;
  int64_t ttl_s = 0;
  size_t nodes = 0;
  std::string from;  // the endpoint that answered
  std::string error;
};

class Resolver {
 public:
  explicit Resolver(Options options);
  ~Resolver();

  Store& store() { return *store_; }
  const Options& options() const { return options_; }
  std::string serverName() const;

  // Every candidate, ranked, in the order a race tries them. `notes` collects what went
  // wrong on the way (a DNS failure, the store's recovery), for the CLI to print.
  std::vector<Candidate> candidates(std::vector<std::string>* notes = nullptr);
  // The rank of one candidate now (higher goes first), from its source, staleness and
  // the store's record of it.
  double score(const Candidate& c) const;
  // Sorts by score, then puts the best fresh candidate first if a stale one led.
  static void rankStaleLast(std::vector<Candidate>& candidates);

  // Races `candidates` with an HTTP request for `path` (extra header lines in `headers`)
  // until one answers with `expect_status`. Records every success and failure in the
  // store. nullptr when none did; `attempts` says what each did.
  std::unique_ptr<Connection> race(const std::vector<Candidate>& candidates, const std::string& path,
                                   const std::string& headers, int expect_status,
                                   std::vector<Attempt>* attempts = nullptr);

  // One attempt at each candidate, all at once (GET /healthz, 200 expected), each
  // recorded in the store; in the candidates' order.
  std::vector<Attempt> probeAll(const std::vector<Candidate>& candidates);

  // GET /v1/nodes from a raced gateway, stored in one transaction.
  RefreshResult refresh();
  // When the node list should next be refreshed: about 75% of its TTL after the last
  // refresh, jittered by +-10% so that clients do not refresh together. 0: now.
  int64_t nextRefreshAt() const;

 private:
  void record(const std::vector<Attempt>& attempts);
  std::string request(const std::string& path, const std::string& headers) const;
  double score(const Candidate& c, const std::optional<StoredEndpoint>& rec, int64_t now) const;
  SSL_CTX* sslContext();

  Options options_;
  std::unique_ptr<Store> store_;
  SSL_CTX* ssl_ctx_ = nullptr;
  double refresh_jitter_;
};

int64_t unixNow();

}  // namespace dingo::ns
