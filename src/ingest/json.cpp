// JSON of any shape through Boost.JSON's SAX parser: numeric leaves become records named from
// their keys, and context comes from sibling and ancestor keys. A SAX handler (not a DOM) keeps
// memory flat, gives each value's line from its position in the buffer, and lets the
// parser's own depth limit stop deep nesting before any recursion gets deep.
#include "ingest/internal.hpp"

#include <boost/json/basic_parser_impl.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_map>

namespace chimera::ingest::detail {

namespace {

namespace json = boost::json;

struct KeyEntry {
  NameInfo info;
  bool has_metric = false;
  Metric metric;  // for values without a unit of their own
};

struct Node {
  int parent = -1;
  Context own;
  bool has_own = false;
  const Context* resolved = nullptr;
};

struct Pending {
  KeyEntry* entry = nullptr;
  double raw = 0;
  std::string_view cell_unit;  // a unit written in a string value ("0.1 s"), interned
  std::string_view origin;     // JSON path, interned
  int node = 0;
  int line = 0;
  std::uint32_t frame = 0;  // serial of the object it sits in directly
};

struct PendingError {
  std::string_view metric;
  std::string_view text;  // interned
  int node = 0;
  int line = 0;
};

struct Frame {
  bool array = false;
  bool options = false;    // settings object: scalars are context of `node`
  bool model_obj = false;  // "model": {...}: its "name" is the model
  bool runs = false;       // array of runs: element objects get run = index + 1
  std::size_t index = 0;   // next element index (arrays)
  std::size_t path_len = 0;
  int node = 0;
  std::string name;  // the key this container sits under, as written
  std::uint32_t serial = 0;
  std::string_view unit;  // a "unit" sibling (objects), as written, interned
};

}  // namespace

struct JsonScratch {
  std::vector<Frame> frames;  // [0, depth) are open; the others keep their names' capacity
  std::size_t depth = 0;
  std::vector<Node> nodes;
  std::vector<Pending> pending;
  std::vector<PendingError> errors;
  // Keys as classified, kept from file to file (their metrics are interned in the thread's
  // arena). A file may turn an error key into a metric ("errors": 3 is a count): `converted`
  // lists those, restored before the next file.
  std::unordered_map<std::string, KeyEntry> keys;
  struct Converted {
    KeyEntry* entry = nullptr;
    Role role = Role::metric;
    bool stem_was_empty = false;
  };
  std::vector<Converted> converted;
  std::string key, key_buf, str_buf, num_buf, path, composed;

  // Ready for the next file.
  void reset() {
    for (const auto& c : converted) {
      c.entry->info.role = c.role;
      if (c.stem_was_empty) c.entry->info.stem.clear();
      c.entry->has_metric = false;
    }
    converted.clear();
    if (keys.size() > 4096) keys.clear();  // documents with ever new keys: bounded memory
    depth = 0;
    nodes.clear();
    pending.clear();
    errors.clear();
    key.clear();
    key_buf.clear();
    str_buf.clear();
    num_buf.clear();
    path.clear();
    composed.clear();
  }
};

void JsonScratchDelete::operator()(JsonScratch* p) const {
  delete p;
}

namespace {

class Harvester {
 public:
  static constexpr std::size_t max_array_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_object_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_string_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_key_size = static_cast<std::size_t>(-1);

  Harvester(ParseJob* job, std::string_view text, JsonScratch& scratch)
      : job_(job),
        text_(text),
        pos_(text.data()),
        s_(scratch),
        frames_(scratch.frames),
        depth_(scratch.depth),
        nodes_(scratch.nodes),
        pending_(scratch.pending),
        errors_(scratch.errors),
        keys_(scratch.keys),
        key_(scratch.key),
        key_buf_(scratch.key_buf),
        str_buf_(scratch.str_buf),
        num_buf_(scratch.num_buf),
        path_(scratch.path),
        composed_(scratch.composed) {
    scratch.reset();
    nodes_.push_back(Node{});  // root: the empty context
  }

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }

  bool on_object_begin(json::error_code&) {
    open(false);
    return true;
  }
  bool on_object_end(std::size_t, json::error_code&) {
    close();
    return true;
  }
  bool on_array_begin(json::error_code&) {
    open(true);
    return true;
  }
  bool on_array_end(std::size_t, json::error_code&) {
    close();
    return true;
  }

  bool on_key_part(json::string_view s, std::size_t, json::error_code& ec) {
    return append(key_buf_, s, ec);
  }
  bool on_key(json::string_view s, std::size_t, json::error_code& ec) {
    if (!append(key_buf_, s, ec)) return false;
    key_.swap(key_buf_);
    key_buf_.clear();
    return true;
  }
  bool on_string_part(json::string_view s, std::size_t, json::error_code& ec) {
    return append(str_buf_, s, ec);
  }
  bool on_string(json::string_view s, std::size_t, json::error_code& ec) {
    if (!str_buf_.empty()) {
      if (!append(str_buf_, s, ec)) return false;
      string_value(str_buf_, s.data());
      str_buf_.clear();
    } else {
      if (s.size() > job_->options->max_line_bytes) return too_long(s.size(), ec);
      string_value(std::string_view(s.data(), s.size()), s.data());
    }
    after_value();
    return true;
  }
  bool on_number_part(json::string_view s, json::error_code&) {
    num_buf_.append(s.data(), s.size());
    return true;
  }
  bool on_int64(std::int64_t v, json::string_view s, json::error_code&) {
    return number(static_cast<double>(v), s);
  }
  bool on_uint64(std::uint64_t v, json::string_view s, json::error_code&) {
    return number(static_cast<double>(v), s);
  }
  bool on_double(double v, json::string_view s, json::error_code&) { return number(v, s); }
  bool on_bool(bool b, json::error_code&) {
    if (depth_ != 0 && !top().options) {
      auto& entry = lookup(current_key());
      if (entry.info.role == Role::success && !b)
        errors_.push_back(PendingError{job_->arena().intern(entry.info.key), "false", top().node,
                                       line_of(nullptr)});
    }
    after_value();
    return true;
  }
  bool on_null(json::error_code&) {
    after_value();
    return true;
  }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }

  // Turns the pending values into records, once every sibling has been seen.
  void finish() {
    Arena& arena = job_->arena();
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      auto& n = nodes_[i];
      const Context* parent = n.parent < 0 ? arena.empty_context() : nodes_[n.parent].resolved;
      if (!n.has_own) {
        n.resolved = parent;
        continue;
      }
      Context c = *parent;
      for (auto f : {Field::model, Field::quantization, Field::num_gpu, Field::num_ctx,
                     Field::temperature, Field::run}) {
        auto v = field_of(n.own, f);
        if (!v.empty()) field_of(c, f) = v;
      }
      for (const auto& [k, v] : n.own.extra) {
        // A named reference to the binding: clang before 16 (clang-tidy 14) cannot capture one.
        auto it = std::find_if(c.extra.begin(), c.extra.end(),
                               [&key = k](auto& kv) { return kv.first == key; });
        if (it != c.extra.end()) {
          it->second = v;
        } else {
          c.extra.emplace_back(k, v);
        }
      }
      // A model set here replaces the parent's, and with it a quantization taken from it.
      if (!n.own.model.empty() && n.own.quantization.empty()) c.quantization = {};
      finish_context(c, arena);
      n.resolved = arena.new_context(std::move(c));
    }
    job_->reserve_records(pending_.size());
    for (const auto& p : pending_) {
      const Metric* m;
      Metric local;
      if (p.cell_unit.empty()) {
        if (!p.entry->has_metric) {
          p.entry->metric = intern_metric(finalize_metric(p.entry->info, UnitConv{}), arena);
          p.entry->has_metric = true;
        }
        m = &p.entry->metric;
      } else {
        local = intern_metric(finalize_metric(p.entry->info, unit_from_text(p.cell_unit)), arena);
        m = &local;
      }
      job_->record(*m, p.raw, nodes_[p.node].resolved, p.origin, p.line);
    }
    for (const auto& e : errors_)
      job_->error_value(e.metric, e.text, nodes_[e.node].resolved, e.line);
  }

 private:
  bool append(std::string& buf, json::string_view s, json::error_code& ec) {
    if (buf.size() + s.size() > job_->options->max_line_bytes)
      return too_long(buf.size() + s.size(), ec);
    buf.append(s.data(), s.size());
    return true;
  }
  bool too_long(std::size_t, json::error_code& ec) {
    too_long_ = true;
    ec = json::error::string_too_large;
    return false;
  }

  // The line of a position in the input; positions only move forward.
  int line_of(const char* p) {
    if (p != nullptr && p >= pos_ && p <= text_.data() + text_.size()) {
      line_ += static_cast<int>(std::count(pos_, p, '\n'));
      pos_ = p;
    }
    return line_;
  }

  Frame& top() { return frames_[depth_ - 1]; }
  const Frame& top() const { return frames_[depth_ - 1]; }

  const std::string& current_key() const { return top().array ? top().name : key_; }

  void open(bool array) {
    if (depth_ == frames_.size()) frames_.emplace_back();
    Frame& f = frames_[depth_];  // reused: its name keeps its capacity
    f.array = array;
    f.options = false;
    f.model_obj = false;
    f.runs = false;
    f.index = 0;
    f.name.clear();
    f.unit = {};
    f.serial = ++serial_;
    f.path_len = path_.size();
    int parent_node = depth_ == 0 ? 0 : top().node;
    if (depth_ != 0) {
      const Frame& up = top();
      if (up.array) {
        path_ += '[';
        path_ += std::to_string(up.index);
        path_ += ']';
        f.name = up.name;
      } else {
        if (!path_.empty()) path_ += '.';
        path_ += key_;
        f.name = key_;
      }
    }
    f.node = parent_node;
    if (!array) {
      bool settings = false, model_obj = false;
      if (depth_ != 0 && !top().array) {
        auto& entry = lookup(key_);
        settings = entry.info.role == Role::options || entry.info.key == "config" ||
                   entry.info.key == "configuration";
        model_obj = is_model_object_key(entry.info.key);
      }
      if (depth_ != 0 && top().options) settings = true;
      if (settings || model_obj) {
        f.options = true;
        f.model_obj = model_obj;
      } else {
        Node n;
        n.parent = parent_node;
        if (depth_ != 0 && top().array && top().runs) {
          n.own.run = job_->arena().intern(std::to_string(top().index + 1));
          n.has_own = true;
        }
        nodes_.push_back(std::move(n));
        f.node = static_cast<int>(nodes_.size() - 1);
      }
    } else {
      f.runs = is_runs_key(normalize_key(f.name));
      f.options = depth_ != 0 && top().options;
    }
    ++depth_;
  }

  void close() {
    const Frame& f = frames_[--depth_];
    if (!f.array && !f.unit.empty()) {
      // A "unit" sibling applies to the values of this object that had none.
      for (auto it = pending_.rbegin(); it != pending_.rend() && it->frame >= f.serial; ++it) {
        if (it->frame == f.serial && it->cell_unit.empty() && !it->entry->info.unit.present)
          it->cell_unit = f.unit;
      }
    }
    path_.resize(f.path_len);
    after_value();
  }

  void after_value() {
    if (depth_ != 0 && top().array) ++top().index;
  }

  KeyEntry& lookup(const std::string& key) {
    auto it = keys_.find(key);
    if (it == keys_.end()) it = keys_.emplace(key, KeyEntry{classify_name(key), false, {}}).first;
    return it->second;
  }

  // The entry for a metric: a bare statistic ("p50_ms", "mean") is named after the nearest
  // container key ("timing" -> "timing_p50").
  KeyEntry& metric_entry(const std::string& key, KeyEntry& plain) {
    if (!plain.info.generic) return plain;
    const auto top_it = frames_.rbegin() + static_cast<std::ptrdiff_t>(frames_.size() - depth_);
    for (auto it = top_it; it != frames_.rend(); ++it) {
      if (it->name.empty() || (it->name == key && it == top_it && it->array)) continue;
      composed_.assign(it->name);
      composed_ += '_';
      composed_ += key;
      return lookup(composed_);
    }
    return plain;
  }

  std::string_view value_path() {
    const Frame& f = top();
    std::size_t len = path_.size();
    if (f.array) {
      path_ += '[';
      path_ += std::to_string(f.index);
      path_ += ']';
    } else {
      if (!path_.empty()) path_ += '.';
      path_ += key_;
    }
    auto view = job_->arena().store(path_);  // paths are mostly unique: no interning
    path_.resize(len);
    return view;
  }

  Node& node() {
    auto& n = nodes_[static_cast<std::size_t>(top().node)];
    n.has_own = true;
    return n;
  }

  void context_value(const KeyEntry& entry, std::string_view text) {
    Arena& arena = job_->arena();
    const Frame& f = top();
    if (f.model_obj && entry.info.key == "name") {
      set_context(node().own, Field::model, text, arena);
    } else if (entry.info.role == Role::context_main) {
      if (!set_context(node().own, entry.info.field, text, arena))
        set_extra(node().own, entry.info.key, text, arena);
    } else if (!entry.info.key.empty()) {
      set_extra(node().own, entry.info.key, text, arena);
    }
  }

  bool number(double v, json::string_view s) {
    std::string_view text(s.data(), s.size());
    const char* where = s.data();
    if (!num_buf_.empty()) {
      num_buf_.append(s.data(), s.size());
      text = num_buf_;
      where = nullptr;
    }
    if (!std::isfinite(v)) {
      // 1e999 parses as infinity: no figure can be made of it. The CSV reader refuses the same
      // cell; here the value is skipped and named, and the rest of the file is kept.
      job_->error(line_of(where),
                  fmt::format("the number {} for '{}' is out of range (beyond a double); skipped",
                              text.substr(0, 40), depth_ == 0 ? "" : current_key()),
                  false);
      num_buf_.clear();
      return true;
    }
    if (depth_ != 0) {
      const std::string& key = current_key();
      auto& entry = lookup(key);
      const Frame& f = top();
      bool as_context = f.options || entry.info.role == Role::context_extra ||
                        entry.info.role == Role::unit || entry.info.role == Role::options;
      if (entry.info.role == Role::context_main && !f.options) {
        if (set_context(node().own, entry.info.field, text, job_->arena())) {
          as_context = true;
        }
      } else if (as_context) {
        context_value(entry, text);
      }
      if (!as_context && entry.info.role != Role::context_main) {
        auto& m = metric_entry(key, entry);
        if (m.info.role == Role::error || m.info.role == Role::success) {
          // "errors": 3 is a count of errors (in this file: restored for the next one).
          s_.converted.push_back(JsonScratch::Converted{&m, m.info.role, m.info.stem.empty()});
          m.has_metric = false;
          m.info.role = Role::metric;
          if (m.info.stem.empty()) m.info.stem = m.info.key;
        }
        pending_.push_back(Pending{&m, v, {}, value_path(), f.node, line_of(where), f.serial});
      } else if (!as_context) {
        // A refused context value (a temperature of 48): a reading, recorded as a metric.
        KeyEntry& reading = lookup(key + "_value");
        pending_.push_back(
            Pending{&reading, v, {}, value_path(), f.node, line_of(where), f.serial});
      }
    }
    num_buf_.clear();
    after_value();
    return true;
  }

  void string_value(std::string_view s, const char* where) {
    if (depth_ == 0) return;
    const std::string& key = current_key();
    auto& entry = lookup(key);
    Frame& f = top();
    if (f.options) {
      context_value(entry, s);
      return;
    }
    switch (entry.info.role) {
      case Role::context_main:
      case Role::context_extra:
      case Role::options:
        context_value(entry, s);
        return;
      case Role::unit:
        if (!f.array) f.unit = job_->arena().intern(trim(s));
        return;
      case Role::error:
        if (!benign_status(s))
          errors_.push_back(PendingError{job_->arena().intern(entry.info.key),
                                         job_->arena().intern(s.substr(0, 200)), f.node,
                                         line_of(where)});
        return;
      case Role::success:
        if (falsy(s))
          errors_.push_back(PendingError{job_->arena().intern(entry.info.key),
                                         job_->arena().intern(s.substr(0, 200)), f.node,
                                         line_of(where)});
        return;
      case Role::metric:
        break;
    }
    double v = 0;
    std::string_view unit;
    // A number written as a string is an identifier ("581.29", a driver version) unless it
    // carries a unit ("0.5 s").
    if (s.size() < 48 && parse_number(s, &v, &unit) && !unit.empty()) {
      auto& m = metric_entry(key, entry);
      pending_.push_back(Pending{&m, v, job_->arena().intern(unit), value_path(), f.node,
                                 line_of(where), f.serial});
    } else if (!f.array && s.size() < 400 && looks_like_error(s)) {
      errors_.push_back(PendingError{job_->arena().intern(entry.info.key),
                                     job_->arena().intern(s.substr(0, 200)), f.node,
                                     line_of(where)});
    } else if (!f.array && s.size() <= 96) {
      context_value(entry, s);
    }
  }

 public:
  bool too_long_ = false;

 private:
  ParseJob* job_;
  std::string_view text_;
  const char* pos_;
  int line_ = 1;
  std::uint32_t serial_ = 0;
  JsonScratch& s_;
  std::vector<Frame>& frames_;
  std::size_t& depth_;
  std::vector<Node>& nodes_;
  std::vector<Pending>& pending_;
  std::vector<PendingError>& errors_;
  std::unordered_map<std::string, KeyEntry>& keys_;
  std::string &key_, &key_buf_, &str_buf_, &num_buf_, &path_, &composed_;
};

}  // namespace

void parse_json(std::string_view content, ParseJob& job) {
  json::parse_options opts;
  opts.max_depth = std::clamp<unsigned>(job.options->max_json_depth, 1, 1000);
  opts.allow_comments = true;
  opts.allow_trailing_commas = true;
  JsonScratchPtr local;
  JsonScratchPtr& scratch = job.json != nullptr ? *job.json : local;
  if (!scratch) scratch.reset(new JsonScratch);
  json::basic_parser<Harvester> parser(opts, &job, content, *scratch);
  json::error_code ec;
  std::size_t n = parser.write_some(false, content.data(), content.size(), ec);
  if (!ec && !parser.done()) ec = json::error::incomplete;
  if (ec) {
    std::size_t at = std::min(n, content.size());
    int line = 1 + static_cast<int>(
                       std::count(content.begin(), content.begin() + static_cast<long>(at), '\n'));
    std::string reason;
    auto rest = content.substr(at);
    auto trimmed = rest.substr(0, 16);
    if (ec == json::error::too_deep) {
      reason = fmt::format(
          "JSON nested deeper than {} levels at line {} "
          "(IngestOptions::max_json_depth); nothing of the file was recorded",
          opts.max_depth, line);
    } else if (parser.handler().too_long_ || ec == json::error::string_too_large) {
      reason = fmt::format(
          "a JSON string at line {} is over the {}-byte limit "
          "(IngestOptions::max_line_bytes)",
          line, job.options->max_line_bytes);
    } else if (ec == json::error::incomplete) {
      reason = fmt::format("JSON ends early at line {} (truncated file?): {}", line, ec.message());
    } else if (trimmed.starts_with("NaN") || trimmed.starts_with("Infinity") ||
               trimmed.starts_with("-Infinity")) {
      reason = fmt::format(
          "invalid JSON at line {}: NaN and Infinity are not JSON (Python's "
          "json.dump writes them; use allow_nan=False or null)",
          line);
    } else {
      reason = fmt::format("invalid JSON at line {}: {}", line, ec.message());
    }
    job.error(line, std::move(reason), true);
    return;
  }
  parser.handler().finish();
}

}  // namespace chimera::ingest::detail
