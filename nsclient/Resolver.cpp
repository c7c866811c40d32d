#include "dingo/nsclient/Resolver.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "nsclient/Race.h"

namespace dingo::ns {

const char* sourceName(Source s) {
  switch (s) {
    case Source::Primary: return "primary";
    case Source::Backup: return "backup";
    case Source::Store: return "store";
    case Source::Seed: return "seed";
  }
  return "?";
}

std::string Endpoint::toString() const {
  return host.find(':') != std::string::npos ? "[" + host + "]:" + std::to_string(port)
                                             : host + ":" + std::to_string(port);
}

std::optional<Endpoint> parseEndpoint(std::string_view text, bool tls) {
  std::string host;
  std::string_view port_text;
  if (text.starts_with("[")) {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') return std::nullopt;
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || text.find(':') != colon) return std::nullopt;
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  }
  unsigned long port = 0;
  if (port_text.empty() || port_text.size() > 5) return std::nullopt;
  for (char c : port_text) {
    if (c < '0' || c > '9') return std::nullopt;
    port = port * 10 + static_cast<unsigned long>(c - '0');
  }
  if (port == 0 || port > 65535) return std::nullopt;
  Endpoint ep{host, static_cast<uint16_t>(port), tls};
  sockaddr_storage ss;
  socklen_t len;
  if (!makeSockaddr(ep, ss, len)) return std::nullopt;
  return ep;
}

int64_t unixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// ---- Resolver ------------------------------------------------------------------------

Resolver::Resolver(Options options) : options_(std::move(options)) {
  store_ = std::make_unique<Store>(options_.db_path);
  std::random_device rd;
  refresh_jitter_ = std::uniform_real_distribution<double>(-0.1, 0.1)(rd);
}

Resolver::~Resolver() {
  if (ssl_ctx_) SSL_CTX_free(ssl_ctx_);
}

std::string Resolver::serverName() const {
  if (!options_.server_name.empty()) return options_.server_name;
  if (!options_.primary.empty()) return options_.primary;
  return options_.backup;
}

SSL_CTX* Resolver::sslContext() {
  if (ssl_ctx_) return ssl_ctx_;
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) throw std::runtime_error("SSL_CTX_new: " + sslError());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (!options_.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, options_.ca_file.c_str(), nullptr) != 1) {
      std::string why = sslError();
      SSL_CTX_free(ctx);
      throw std::runtime_error("--ca " + options_.ca_file + ": " + why);
    }
  } else {
    SSL_CTX_set_default_verify_paths(ctx);
  }
  static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn);
  ssl_ctx_ = ctx;
  return ctx;
}

// Higher is tried first. The source sets the base; a record of successes, failures and
// round-trip time moves it; staleness costs more than any source difference, so a fresh
// candidate of any source goes before a stale one.
double Resolver::score(const Candidate& c, const std::optional<StoredEndpoint>& rec, int64_t now) const {
  double s = 0;
  switch (c.source) {
    case Source::Primary: s = 100; break;
    case Source::Backup: s = 90; break;
    case Source::Store: s = 80; break;
    case Source::Seed: s = 60; break;
  }
  if (rec) {
    double ok = Store::decayed(rec->successes, rec->last_success, now);
    double bad = Store::decayed(rec->failures, rec->last_failure, now);
    s += 10 * std::min(ok, 3.0);
    s -= 25 * std::min(bad, 4.0);
    if (rec->rtt_ms > 0) s -= std::min(rec->rtt_ms / 20, 25.0);
    // The latest outcome counts most: an endpoint that just failed goes after one that
    // just worked.
    if (rec->last_failure > rec->last_success) s -= 15;
  }
  if (c.stale) s -= 100;
  return s;
}

std::vector<Candidate> Resolver::candidates(std::vector<std::string>* notes) {
  auto note = [&](std::string n) {
    if (notes) notes->push_back(std::move(n));
  };
  int64_t now = unixNow();
  std::vector<Candidate> out;
  std::set<std::pair<std::string, uint16_t>> seen;
  // One candidate per endpoint: the first source that gives it, unless that one is stale
  // and a later one fresh.
  auto add = [&](Candidate c) {
    if (seen.insert({c.endpoint.host, c.endpoint.port}).second) {
      out.push_back(std::move(c));
      return;
    }
    for (auto& have : out)
      if (have.endpoint.host == c.endpoint.host && have.endpoint.port == c.endpoint.port && have.stale && !c.stale)
        have = std::move(c);
  };

  // DNS: both names at once; a fresh cached answer is used without asking (TTL-aware);
  // a failed lookup falls back to the cached answer, marked stale past its TTL.
  std::vector<std::pair<std::string, Source>> names;
  if (!options_.primary.empty()) names.emplace_back(options_.primary, Source::Primary);
  if (!options_.backup.empty()) names.emplace_back(options_.backup, Source::Backup);
  std::vector<std::string> ask;
  std::map<std::string, DnsAnswer> answers;
  std::set<std::string> answered_now;  // fresh whatever their TTL
  for (const auto& [name, src] : names) {
    auto cached = store_->dns(name);
    if (cached && cached->resolved_at + cached->ttl_s > now && !cached->addresses.empty()) answers[name] = *cached;
    else ask.push_back(name);
  }
  if (!ask.empty()) {
    auto results = lookup(ask, options_.dns_server, options_.dns_timeout);
    for (size_t i = 0; i < ask.size(); ++i) {
      if (results[i].error.empty()) {
        DnsAnswer a{ask[i], results[i].addresses, now, results[i].ttl_s};
        store_->saveDns(a);
        answers[ask[i]] = a;
        answered_now.insert(ask[i]);
      } else {
        note("DNS " + ask[i] + ": " + results[i].error);
        if (auto cached = store_->dns(ask[i]); cached && !cached->addresses.empty()) answers[ask[i]] = *cached;
      }
    }
  }
  // Primary first; the backup domain's answers only when the primary has none.
  bool primary_answered = false;
  for (const auto& [name, src] : names) {
    auto it = answers.find(name);
    if (it == answers.end()) continue;
    if (src == Source::Backup && primary_answered) continue;
    const DnsAnswer& a = it->second;
    bool stale = !answered_now.count(name) && a.resolved_at + a.ttl_s <= now;
    if (src == Source::Primary && !stale) primary_answered = true;
    for (const auto& addr : a.addresses)
      add(Candidate{Endpoint{addr, options_.port, options_.tls}, src, static_cast<double>(now - a.resolved_at), stale});
  }
  // The stored node list, stale past its TTL.
  auto meta = store_->nodesMeta();
  for (const auto& e : store_->listed()) {
    // A plain endpoint could be anyone's: only with --plain (Options::tls false).
    if (!e.tls && options_.tls) continue;
    bool stale = !meta || meta->refreshed_at + meta->ttl_s <= now;
    add(Candidate{Endpoint{e.host, e.port, e.tls}, Source::Store, static_cast<double>(now - e.listed_at), stale});
  }
  for (const auto& s : options_.seeds) add(Candidate{s, Source::Seed, 0, false});

  std::map<std::pair<std::string, uint16_t>, StoredEndpoint> records;
  for (auto& e : store_->endpoints()) records.emplace(std::make_pair(e.host, e.port), e);
  for (auto& c : out) {
    auto it = records.find({c.endpoint.host, c.endpoint.port});
    c.score = score(c, it == records.end() ? std::nullopt : std::optional<StoredEndpoint>(it->second), now);
  }
  rankStaleLast(out);
  return out;
}

double Resolver::score(const Candidate& c) const {
  return score(c, store_->find(c.endpoint.host, c.endpoint.port), unixNow());
}

void Resolver::rankStaleLast(std::vector<Candidate>& out) {
  std::stable_sort(out.begin(), out.end(), [](const Candidate& a, const Candidate& b) { return a.score > b.score; });
  // Never a stale candidate first (and so alone for a stagger) while a fresh one exists.
  if (!out.empty() && out.front().stale) {
    auto fresh = std::find_if(out.begin(), out.end(), [](const Candidate& c) { return !c.stale; });
    if (fresh != out.end()) std::rotate(out.begin(), fresh, fresh + 1);
  }
}

std::string Resolver::request(const std::string& path, const std::string& headers) const {
  std::string name = serverName();
  return "GET " + path + " HTTP/1.1\r\nHost: " + (name.empty() ? "dingo" : name) +
         "\r\nUser-Agent: dingo-nsclient/" DINGO_NSCLIENT_VERSION "\r\n" + headers + "\r\n";
}

void Resolver::record(const std::vector<Attempt>& attempts) {
  int64_t now = unixNow();
  for (const auto& a : attempts) {
    const Endpoint& ep = a.candidate.endpoint;
    try {
      if (a.ok) store_->recordSuccess(ep.host, ep.port, ep.tls, a.ms, now);
      // An attempt still running when a later-started one won lost by a stagger at
      // least: it counts against it. Attempts never started count for nothing.
      else if (a.error != "not tried") store_->recordFailure(ep.host, ep.port, ep.tls, now);
    } catch (const StoreError&) {
      // The record is a hint; a busy or read-only store must not fail the connection.
    }
  }
}

std::unique_ptr<Connection> Resolver::race(const std::vector<Candidate>& cands, const std::string& path,
                                           const std::string& headers, int expect_status,
                                           std::vector<Attempt>* attempts) {
  bool any_tls = std::any_of(cands.begin(), cands.end(), [](const Candidate& c) { return c.endpoint.tls; });
  if (any_tls && serverName().empty())
    throw std::runtime_error("TLS needs the service's name to verify: give --primary (or --server-name)");
  std::vector<Attempt> log;
  auto winner = runRace(any_tls ? sslContext() : nullptr, serverName(), request(path, headers), expect_status,
                        options_.stagger, options_.attempt_timeout, cands, log);
  record(log);
  if (attempts) *attempts = std::move(log);
  return winner;
}

std::vector<Attempt> Resolver::probeAll(const std::vector<Candidate>& cands) {
  bool any_tls = std::any_of(cands.begin(), cands.end(), [](const Candidate& c) { return c.endpoint.tls; });
  if (any_tls && serverName().empty())
    throw std::runtime_error("TLS needs the service's name to verify: give --primary (or --server-name)");
  SSL_CTX* ctx = any_tls ? sslContext() : nullptr;
  std::string req = request("/healthz", "Connection: close\r\n");
  std::vector<Attempt> results(cands.size());
  std::vector<std::thread> threads;
  // A race of one each, all at once: a black hole costs its timeout, not everyone's.
  for (size_t i = 0; i < cands.size(); ++i)
    threads.emplace_back([&, i] {
      std::vector<Attempt> log;
      runRace(ctx, serverName(), req, 200, options_.stagger, options_.attempt_timeout, {cands[i]}, log);
      results[i] = log.front();
    });
  for (auto& t : threads) t.join();
  record(results);
  return results;
}

std::optional<NodeList> parseNodeList(std::string_view body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("nodes") || !j["nodes"].is_array() || !j.contains("version") ||
      !j["version"].is_number_unsigned() || !j.contains("ttl_s") || !j["ttl_s"].is_number_integer())
    return std::nullopt;
  NodeList list;
  for (const auto& n : j["nodes"]) {
    if (!n.is_object() || !n.contains("host") || !n["host"].is_string() || !n.contains("port") ||
        !n["port"].is_number_unsigned() || (n.contains("tls") && !n["tls"].is_boolean()))
      continue;
    auto ep = parseEndpoint(Endpoint{n["host"].get<std::string>(), 1, true}.toString());
    uint64_t port = n["port"].get<uint64_t>();
    if (!ep || port == 0 || port > 65535) continue;  // a name or garbage: not a fallback address
    list.nodes.push_back(Node{ep->host, static_cast<uint16_t>(port), n.value("tls", true)});
  }
  list.version = j["version"].get<uint64_t>();
  list.ttl_s = std::max<int64_t>(j["ttl_s"].get<int64_t>(), 1);
  return list;
}

RefreshResult Resolver::refresh() {
  RefreshResult r;
  std::vector<Attempt> log;
  auto cands = candidates();
  auto conn = race(cands, "/v1/nodes", "Accept: application/json\r\nConnection: close\r\n", 200, &log);
  if (!conn) {
    r.error = cands.empty() ? "no candidates (give --primary, --backup or --seed)" : "no gateway answered";
    for (const auto& a : log)
      if (!a.error.empty() && a.error != "not tried") r.error += "; " + a.candidate.endpoint.toString() + ": " + a.error;
    return r;
  }
  r.from = conn->candidate().endpoint.toString();
  auto body = conn->readBody(1 << 20, options_.attempt_timeout);
  if (!body) {
    r.error = "reading the node list from " + r.from + " failed";
    return r;
  }
  auto list = parseNodeList(*body);
  if (!list) {
    r.error = r.from + " answered something that is not a node list";
    return r;
  }
  r.version = list->version;
  r.ttl_s = list->ttl_s;
  r.nodes = list->nodes.size();
  auto before = store_->nodesMeta();
  r.changed = !before || before->version != r.version;
  store_->replaceNodes(list->nodes, r.version, r.ttl_s, unixNow());
  r.ok = true;
  return r;
}

int64_t Resolver::nextRefreshAt() const {
  auto meta = store_->nodesMeta();
  if (!meta) return 0;
  double at = static_cast<double>(meta->ttl_s) * (0.75 + refresh_jitter_ * 0.75);
  return meta->refreshed_at + static_cast<int64_t>(at);
}
}  // namespace dingo::ns
