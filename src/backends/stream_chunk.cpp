#include "backends/stream_chunk.hpp"

#include "core/recycling_allocator.hpp"

#include <boost/json/basic_parser_impl.hpp>

#include <array>
#include <cstdint>
#include <cstring>
#include <new>

namespace chimera::backends {

namespace json = boost::json;

namespace {

// Where the parser is: a frame per open object or array.
enum class Frame : std::uint8_t {
  top,            // the record's object
  choices,        // its "choices" array
  choice,         // the array's one object
  delta,          // the choice's "delta" object
  message,        // Ollama: the record's "message" object
  usage,          // OpenAI: the record's "usage" object
  usage_details,  // its "prompt_tokens_details"
  timings,        // llama-server: the record's "timings" object
  skipped,        // anything else (its contents are not read)
};

// Which field the next value belongs to, from the key before it.
enum class Field : std::uint8_t {
  none,  // a key that is not read: its value, whatever it is, is skipped
  server_sent_ns,
  id_slot,
  model,
  choices,
  index,
  delta,
  text,
  finish_reason,
  content,
  reasoning_content,
  reasoning,
  done,
  message,
  message_content,
  message_thinking,
  response,
  thinking,
  usage,
  completion_tokens,
  prompt_tokens,
  prompt_tokens_details,
  cached_tokens,
  timings,
  prompt_ms,
  predicted_ms,
  predicted_per_second,
  cache_n,
  prompt_n,
  predicted_n,
  done_reason,
  total_duration,
  load_duration,
  prompt_eval_count,
  prompt_eval_duration,
  eval_count,
  eval_duration,
};
static_assert(static_cast<unsigned>(Field::eval_duration) < 64, "a Field is a bit of a uint64");

// Whether `key` is `word`: the lengths first, so that most keys fail at one comparison (every key
// of every record is looked up).
template <std::size_t N>
bool is(std::string_view key, const char (&word)[N]) {
  return key.size() == N - 1 && std::memcmp(key.data(), word, N - 1) == 0;
}

// Declining a record: any handler returning false stops the parser; the caller then parses the
// record whole, which gives the record's own error when it is malformed.
class ChunkHandler {
 public:
  // As boost::json's own tree builder, so that both paths accept the same records.
  static constexpr std::size_t max_object_size = json::object::max_size();
  static constexpr std::size_t max_array_size = json::array::max_size();
  static constexpr std::size_t max_key_size = json::string::max_size();
  static constexpr std::size_t max_string_size = json::string::max_size();

  explicit ChunkHandler(StreamProtocol protocol) : protocol_(protocol) {}

  void start(StreamChunk& out) {
    out_ = &out;
    out.server_sent_ns = nullptr;
    out.id_slot = nullptr;
    out.index = nullptr;
    out.has_model = out.has_choice = out.has_delta = false;
    out.has_content = out.has_reasoning_content = out.has_reasoning = false;
    out.has_text = out.has_finish = false;
    out.has_message = out.has_message_content = out.has_message_thinking = false;
    out.has_response = out.has_thinking = false;
    out.has_usage = out.has_usage_details = out.has_timings = false;
    out.done = out.has_done_reason = false;
    for (json::value* v :
         {&out.completion_tokens, &out.prompt_tokens, &out.cached_tokens, &out.prompt_ms,
          &out.predicted_ms, &out.predicted_per_second, &out.cache_n, &out.prompt_n,
          &out.predicted_n, &out.total_duration, &out.load_duration, &out.prompt_eval_count,
          &out.prompt_eval_duration, &out.eval_count, &out.eval_duration}) {
      *v = nullptr;
    }
    depth_ = 0;
    field_ = Field::none;
    key_.clear();
    started_.fill(false);
  }

  bool on_document_begin(boost::system::error_code&) { return true; }
  bool on_document_end(boost::system::error_code&) { return true; }

  bool on_object_begin(boost::system::error_code& ec) {
    if (depth_ == 0) return push(Frame::top, ec);
    switch (top()) {
      case Frame::skipped:
        return push(Frame::skipped, ec);
      case Frame::choices:
        if (out_->has_choice) return decline(ec);  // several choices: the whole path
        out_->has_choice = true;
        return push(Frame::choice, ec);
      default:
        break;
    }
    switch (take_field()) {
      case Field::none:
        return push(Frame::skipped, ec);
      case Field::delta:
        out_->has_delta = true;
        return push(Frame::delta, ec);
      case Field::message:
        out_->has_message = true;
        return push(Frame::message, ec);
      case Field::usage:
        out_->has_usage = true;
        return push(Frame::usage, ec);
      case Field::prompt_tokens_details:
        out_->has_usage_details = true;
        return push(Frame::usage_details, ec);
      case Field::timings:
        out_->has_timings = true;
        return push(Frame::timings, ec);
      default:
        return decline(ec);  // an object where a string or a number belongs
    }
  }
  bool on_object_end(std::size_t, boost::system::error_code&) { return pop(); }

  bool on_array_begin(boost::system::error_code& ec) {
    if (depth_ == 0) return decline(ec);
    if (top() == Frame::skipped) return push(Frame::skipped, ec);
    if (top() == Frame::choices) return decline(ec);
    switch (take_field()) {
      case Field::none:
        return push(Frame::skipped, ec);
      case Field::choices:
        return push(Frame::choices, ec);
      default:
        return decline(ec);
    }
  }
  bool on_array_end(std::size_t, boost::system::error_code&) { return pop(); }

  bool on_key_part(json::string_view s, std::size_t, boost::system::error_code&) {
    key_.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, boost::system::error_code& ec) {
    if (top() == Frame::skipped) {
      key_.clear();
      return true;
    }
    std::string_view key(s.data(), s.size());
    if (!key_.empty()) {
      key_.append(s.data(), s.size());
      key = key_;
    }
    const bool ok = choose_field(key, ec);
    key_.clear();
    return ok;
  }

  bool on_string_part(json::string_view s, std::size_t, boost::system::error_code& ec) {
    return string_piece(s, ec);
  }
  bool on_string(json::string_view s, std::size_t, boost::system::error_code& ec) {
    if (!string_piece(s, ec)) return false;
    field_ = Field::none;
    return true;
  }

  bool on_number_part(json::string_view, boost::system::error_code&) { return true; }
  bool on_int64(std::int64_t i, json::string_view, boost::system::error_code& ec) {
    return scalar(json::value(i), ec);
  }
  bool on_uint64(std::uint64_t u, json::string_view, boost::system::error_code& ec) {
    return scalar(json::value(u), ec);
  }
  bool on_double(double d, json::string_view, boost::system::error_code& ec) {
    return scalar(json::value(d), ec);
  }
  bool on_bool(bool b, boost::system::error_code& ec) { return scalar(json::value(b), ec); }
  bool on_null(boost::system::error_code& ec) { return scalar(json::value(nullptr), ec); }

  // Comments are not allowed by the default options, which both paths use.
  bool on_comment_part(json::string_view, boost::system::error_code&) { return true; }
  bool on_comment(json::string_view, boost::system::error_code&) { return true; }

 private:
  Frame top() const { return frames_[depth_ - 1]; }

  bool push(Frame f, boost::system::error_code& ec) {
    if (depth_ == frames_.size()) return decline(ec);
    seen_[depth_] = 0;
    frames_[depth_++] = f;
    field_ = Field::none;
    return true;
  }
  bool pop() {
    --depth_;
    field_ = Field::none;
    return true;
  }
  Field take_field() {
    const Field f = field_;
    field_ = Field::none;
    return f;
  }

  static bool decline(boost::system::error_code& ec) {
    ec = json::error::syntax;  // any error: the parser stops, the caller reads the whole record
    return false;
  }

  // A key read twice, or one whose value needs the whole path (an error, tool calls), declines
  // the record.
  bool choose_field(std::string_view key, boost::system::error_code& ec) {
    Field f = Field::none;
    switch (top()) {
      case Frame::top:
        if (protocol_ == StreamProtocol::ollama) {
          if (is(key, "error")) return decline(ec);
          if (is(key, "server_sent_ns")) f = Field::server_sent_ns;
          if (is(key, "model")) f = Field::model;
          if (is(key, "done")) f = Field::done;
          if (is(key, "message")) f = Field::message;
          if (is(key, "response")) f = Field::response;
          if (is(key, "thinking")) f = Field::thinking;
          if (is(key, "done_reason")) f = Field::done_reason;
          if (is(key, "total_duration")) f = Field::total_duration;
          if (is(key, "load_duration")) f = Field::load_duration;
          if (is(key, "prompt_eval_count")) f = Field::prompt_eval_count;
          if (is(key, "prompt_eval_duration")) f = Field::prompt_eval_duration;
          if (is(key, "eval_count")) f = Field::eval_count;
          if (is(key, "eval_duration")) f = Field::eval_duration;
          break;
        }
        if (is(key, "error")) return decline(ec);
        if (is(key, "server_sent_ns")) f = Field::server_sent_ns;
        if (is(key, "id_slot")) f = Field::id_slot;
        if (is(key, "model")) f = Field::model;
        if (is(key, "choices")) f = Field::choices;
        if (is(key, "usage")) f = Field::usage;
        if (is(key, "timings")) f = Field::timings;
        break;
      case Frame::usage:
        if (is(key, "completion_tokens")) f = Field::completion_tokens;
        if (is(key, "prompt_tokens")) f = Field::prompt_tokens;
        if (is(key, "prompt_tokens_details")) f = Field::prompt_tokens_details;
        break;
      case Frame::usage_details:
        if (is(key, "cached_tokens")) f = Field::cached_tokens;
        break;
      case Frame::timings:
        if (is(key, "prompt_ms")) f = Field::prompt_ms;
        if (is(key, "predicted_ms")) f = Field::predicted_ms;
        if (is(key, "predicted_per_second")) f = Field::predicted_per_second;
        if (is(key, "cache_n")) f = Field::cache_n;
        if (is(key, "prompt_n")) f = Field::prompt_n;
        if (is(key, "predicted_n")) f = Field::predicted_n;
        break;
      case Frame::choice:
        if (is(key, "index")) f = Field::index;
        if (is(key, "delta")) f = Field::delta;
        if (is(key, "text")) f = Field::text;
        if (is(key, "finish_reason")) f = Field::finish_reason;
        break;
      case Frame::delta:
        if (is(key, "tool_calls")) return decline(ec);
        if (is(key, "content")) f = Field::content;
        if (is(key, "reasoning_content")) f = Field::reasoning_content;
        if (is(key, "reasoning")) f = Field::reasoning;
        break;
      case Frame::message:
        if (is(key, "tool_calls")) return decline(ec);
        if (is(key, "content")) f = Field::message_content;
        if (is(key, "thinking")) f = Field::message_thinking;
        break;
      default:
        break;
    }
    if (f != Field::none) {
      const auto bit = std::uint64_t{1} << static_cast<unsigned>(f);
      if ((seen_[depth_ - 1] & bit) != 0) return decline(ec);
      seen_[depth_ - 1] |= bit;
    }
    field_ = f;
    return true;
  }

  bool string_piece(json::string_view s, boost::system::error_code& ec) {
    if (depth_ == 0 || top() == Frame::choices) return decline(ec);
    if (top() == Frame::skipped) return true;
    std::string* to = nullptr;
    switch (field_) {
      case Field::none:
        return true;
      case Field::model:
        to = &out_->model, out_->has_model = true;
        break;
      case Field::text:
        to = &out_->text, out_->has_text = true;
        break;
      case Field::finish_reason:
        to = &out_->finish, out_->has_finish = true;
        break;
      case Field::content:
        to = &out_->content, out_->has_content = true;
        break;
      case Field::reasoning_content:
        to = &out_->reasoning_content, out_->has_reasoning_content = true;
        break;
      case Field::reasoning:
        to = &out_->reasoning, out_->has_reasoning = true;
        break;
      case Field::message_content:
        to = &out_->message_content, out_->has_message_content = true;
        break;
      case Field::message_thinking:
        to = &out_->message_thinking, out_->has_message_thinking = true;
        break;
      case Field::response:
        to = &out_->response, out_->has_response = true;
        break;
      case Field::thinking:
        to = &out_->thinking, out_->has_thinking = true;
        break;
      case Field::done_reason:
        to = &out_->done_reason, out_->has_done_reason = true;
        break;
      default:
        return decline(ec);  // a string where a number or a container belongs
    }
    if (!started_[static_cast<unsigned>(field_)]) {
      to->clear();
      started_[static_cast<unsigned>(field_)] = true;
    }
    to->append(s.data(), s.size());
    return true;
  }

  // Where a number of usage or timings goes; nullptr for any other field.
  json::value* number_slot(Field f) const {
    switch (f) {
      case Field::completion_tokens:
        return &out_->completion_tokens;
      case Field::prompt_tokens:
        return &out_->prompt_tokens;
      case Field::cached_tokens:
        return &out_->cached_tokens;
      case Field::prompt_ms:
        return &out_->prompt_ms;
      case Field::predicted_ms:
        return &out_->predicted_ms;
      case Field::predicted_per_second:
        return &out_->predicted_per_second;
      case Field::cache_n:
        return &out_->cache_n;
      case Field::prompt_n:
        return &out_->prompt_n;
      case Field::predicted_n:
        return &out_->predicted_n;
      case Field::total_duration:
        return &out_->total_duration;
      case Field::load_duration:
        return &out_->load_duration;
      case Field::prompt_eval_count:
        return &out_->prompt_eval_count;
      case Field::prompt_eval_duration:
        return &out_->prompt_eval_duration;
      case Field::eval_count:
        return &out_->eval_count;
      case Field::eval_duration:
        return &out_->eval_duration;
      default:
        return nullptr;
    }
  }

  bool scalar(const json::value& v, boost::system::error_code& ec) {
    if (depth_ == 0 || top() == Frame::choices) return decline(ec);
    if (top() == Frame::skipped) return true;
    if (json::value* slot = number_slot(field_)) {
      field_ = Field::none;
      *slot = v;
      return true;
    }
    switch (take_field()) {
      case Field::server_sent_ns:
        out_->server_sent_ns = v;
        return true;
      case Field::id_slot:
        out_->id_slot = v;
        return true;
      case Field::index:
        out_->index = v;
        return true;
      case Field::done:
        out_->done = v.is_bool() && v.get_bool();  // any other value: not the final record
        return true;
      case Field::choices:
      case Field::delta:
        // Neither an array nor an object: the whole path, which has its own word for it.
        return decline(ec);
      default:
        return true;  // a null or a number for a string field: not a string, not used
    }
  }

  StreamProtocol protocol_;
  StreamChunk* out_ = nullptr;
  // Deeper than any record of the common shape; a deeper record takes the whole path.
  std::array<Frame, 32> frames_{};
  std::array<std::uint64_t, 32> seen_{};  // per open frame: the keys of Field it has had
  // Per Field: whether its string has begun (a string with escapes arrives in pieces).
  std::array<bool, 64> started_{};
  std::size_t depth_ = 0;
  Field field_ = Field::none;
  std::string key_;
};

}  // namespace

struct StreamChunkScanner::Impl {
  explicit Impl(StreamProtocol protocol) : parser(json::parse_options{}, protocol) {}
  json::basic_parser<ChunkHandler> parser;
  StreamChunk chunk;
};

void StreamChunkScanner::Drop::operator()(Impl* impl) const {
  impl->~Impl();
  RecyclingAllocator<Impl>().deallocate(impl, 1);
}

StreamChunkScanner::StreamChunkScanner(StreamProtocol protocol) {
  RecyclingAllocator<Impl> alloc;
  Impl* memory = alloc.allocate(1);
  try {
    impl_.reset(::new (static_cast<void*>(memory)) Impl(protocol));
  } catch (...) {
    alloc.deallocate(memory, 1);
    throw;
  }
}
StreamChunkScanner::~StreamChunkScanner() = default;

bool StreamChunkScanner::scan(std::string_view text) {
  auto& p = impl_->parser;
  p.reset();
  p.handler().start(impl_->chunk);
  boost::system::error_code ec;
  const std::size_t n = p.write_some(false, text.data(), text.size(), ec);
  return !ec && n == text.size() && p.done();
}

const StreamChunk& StreamChunkScanner::chunk() const {
  return impl_->chunk;
}

}  // namespace chimera::backends
