#include <chimera/engine/tool_loop.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace chimera {

namespace json = boost::json;

const char* to_string(ToolOutcome o) {
  switch (o) {
    case ToolOutcome::ok:
      return "ok";
    case ToolOutcome::error:
      return "error";
    case ToolOutcome::timeout:
      return "timeout";
    case ToolOutcome::unknown_tool:
      return "unknown_tool";
    case ToolOutcome::bad_arguments:
      return "bad_arguments";
  }
  return "?";
}

const char* to_string(LoopEnd e) {
  switch (e) {
    case LoopEnd::answer:
      return "answer";
    case LoopEnd::max_steps:
      return "max_steps";
    case LoopEnd::model_error:
      return "model_error";
    case LoopEnd::cancelled:
      return "cancelled";
  }
  return "?";
}

namespace {

bool valid_tool_name(std::string_view n) {
  if (n.empty() || n.size() > 64) return false;
  return std::all_of(n.begin(), n.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-';
  });
}

// One tool call in flight: the thread that runs it writes here; the loop waits with a deadline.
// Shared, so that a call that outlives its timeout still has somewhere to write.
struct Pending {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  bool threw = false;
  std::string result;
};

void start_tool(const Tool& tool, const std::string& args, const std::shared_ptr<Pending>& p) {
  std::thread([run = tool.run, args, p] {
    std::string result;
    bool threw = false;
    try {
      result = run(args);
    } catch (const std::exception& e) {
      result = e.what();
      threw = true;
    } catch (...) {
      result = "unknown exception";
      threw = true;
    }
    {
      std::lock_guard lock(p->mu);
      p->result = std::move(result);
      p->threw = threw;
      p->done = true;
    }
    p->cv.notify_all();
  }).detach();
}

// A call that cannot run: its record says why, and so does the result the model reads.
bool refuse(const Toolbox& tools, ToolRecord& rec) {
  const Tool* tool = tools.find(rec.call.name);
  if (tool == nullptr) {
    std::string names;
    for (const auto& t : tools.tools()) names += (names.empty() ? "" : ", ") + t.name;
    rec.outcome = ToolOutcome::unknown_tool;
    rec.result = fmt::format("error: there is no tool named '{}'; the tools are: {}", rec.call.name,
                             names.empty() ? "(none)" : names);
    return true;
  }
  boost::system::error_code ec;
  const json::value args =
      json::parse(rec.call.arguments_json.empty() ? "{}" : rec.call.arguments_json, ec);
  if (ec || !args.is_object()) {
    rec.outcome = ToolOutcome::bad_arguments;
    rec.result = fmt::format("error: the arguments of '{}' are not a JSON object: {}",
                             rec.call.name, rec.call.arguments_json.substr(0, 200));
    return true;
  }
  return false;
}

// Runs one step's calls, at most max_parallel at once, each with its own deadline.
void run_tools(const Toolbox& tools, const LoopOptions& o, std::vector<ToolRecord>& records) {
  for (std::size_t first = 0; first < records.size();
       first += static_cast<std::size_t>(o.max_parallel)) {
    const std::size_t last =
        std::min(records.size(), first + static_cast<std::size_t>(o.max_parallel));
    std::vector<std::shared_ptr<Pending>> pending(last - first);
    std::vector<int64_t> started(last - first);
    for (std::size_t i = first; i < last; ++i) {
      started[i - first] = now_ns();
      if (refuse(tools, records[i])) continue;
      pending[i - first] = std::make_shared<Pending>();
      start_tool(*tools.find(records[i].call.name), records[i].call.arguments_json,
                 pending[i - first]);
    }
    for (std::size_t i = first; i < last; ++i) {
      ToolRecord& rec = records[i];
      const auto& p = pending[i - first];
      if (p) {
        std::unique_lock lock(p->mu);
        const auto deadline = std::chrono::steady_clock::time_point(
            std::chrono::nanoseconds(started[i - first] + o.tool_timeout_ms * 1'000'000));
        if (!p->cv.wait_until(lock, deadline, [&p] { return p->done; })) {
          rec.outcome = ToolOutcome::timeout;
          rec.result = fmt::format("error: the tool '{}' did not answer within {} ms",
                                   rec.call.name, o.tool_timeout_ms);
        } else {
          rec.outcome = p->threw ? ToolOutcome::error : ToolOutcome::ok;
          rec.result =
              p->threw ? fmt::format("error: the tool '{}' failed: {}", rec.call.name, p->result)
                       : std::move(p->result);
        }
      }
      rec.elapsed_ns = now_ns() - started[i - first];
    }
  }
}

void check(const LoopOptions& o) {
  if (o.max_steps < 1 || o.max_steps > 1000) {
    throw std::invalid_argument(
        fmt::format("max_steps is {}; it must be from 1 to 1000", o.max_steps));
  }
  if (o.tool_timeout_ms < 1 || o.tool_timeout_ms > 86'400'000) {
    throw std::invalid_argument(fmt::format(
        "tool_timeout_ms is {}; it must be from 1 to 86400000 (a day)", o.tool_timeout_ms));
  }
  if (o.max_parallel < 1 || o.max_parallel > 256) {
    throw std::invalid_argument(
        fmt::format("max_parallel is {}; it must be from 1 to 256", o.max_parallel));
  }
}

Message reply_of(const Completion& c) {
  Message m;
  m.role = "assistant";
  m.content = c.text;
  m.thinking = c.thinking;
  return m;
}

// The model's reply and the results of the calls it made, appended to the conversation.
void record_turn(const LoopStep& step, std::vector<Message>& messages) {
  const Completion& c = step.completion;
  Message& reply = messages.emplace_back(reply_of(c));
  for (const auto& t : step.tools) reply.tool_calls.push_back(t.call);
  for (const auto& t : step.tools) {
    Message& result = messages.emplace_back();
    result.role = "tool";
    result.content = t.result;
    result.tool_name = t.call.name;
    result.tool_call_id = t.call.id;
  }
}

}  // namespace

Toolbox& Toolbox::add(Tool tool) {
  if (!valid_tool_name(tool.name)) {
    throw std::invalid_argument(fmt::format(
        "tool name '{}' must be 1-64 letters, digits, '_' or '-'", tool.name.substr(0, 80)));
  }
  if (find(tool.name) != nullptr) {
    throw std::invalid_argument(fmt::format("tool '{}' is registered twice", tool.name));
  }
  boost::system::error_code ec;
  const json::value schema = json::parse(tool.parameters_json, ec);
  if (ec || !schema.is_object()) {
    throw std::invalid_argument(
        fmt::format("tool '{}': its parameters are not a JSON schema object: {}", tool.name,
                    ec ? ec.message() : "not an object"));
  }
  if (!tool.run) throw std::invalid_argument(fmt::format("tool '{}' has no function", tool.name));
  tools_.push_back(std::move(tool));
  return *this;
}

const Tool* Toolbox::find(std::string_view name) const {
  for (const auto& t : tools_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::string Toolbox::definitions_json() const {
  json::array defs;
  for (const auto& t : tools_) {
    defs.push_back(
        json::object{{"type", "function"},
                     {"function", json::object{{"name", t.name},
                                               {"description", t.description},
                                               {"parameters", json::parse(t.parameters_json)}}}});
  }
  return json::serialize(defs);
}

int64_t LoopResult::overhead_ns() const {
  int64_t sum = 0;
  for (const auto& s : steps) sum += s.step_ns - s.model_ns - s.tools_ns;
  return sum;
}

LoopResult run_tool_loop(Backend& backend, Request request, const Toolbox& tools,
                         const LoopOptions& options, const TokenCallback& on_token) {
  check(options);
  LoopResult out;
  if (!request.tools_json) request.tools_json = tools.definitions_json();
  request.kind = RequestKind::chat;
  out.messages = std::move(request.messages);
  for (int step_no = 1; step_no <= options.max_steps; ++step_no) {
    const int64_t t_step = now_ns();
    LoopStep& step = out.steps.emplace_back();
    request.messages = out.messages;
    if (step_no > 1 && request.tool_choice == "required") request.tool_choice = "auto";
    const int64_t t_model = now_ns();
    step.completion = backend.generate(request, on_token);
    step.model_ns = now_ns() - t_model;
    const Completion& c = step.completion;
    if (!c.ok()) {
      out.end = c.error.kind == ErrorKind::cancelled ? LoopEnd::cancelled : LoopEnd::model_error;
      out.error = c.error;
      step.step_ns = now_ns() - t_step;
      return out;
    }
    out.answer = c.text;
    if (c.tool_calls.empty()) {
      out.messages.push_back(reply_of(c));
      out.end = LoopEnd::answer;
      step.step_ns = now_ns() - t_step;
      return out;
    }
    for (std::size_t i = 0; i < c.tool_calls.size(); ++i) {
      ToolRecord& rec = step.tools.emplace_back();
      rec.call = c.tool_calls[i];
      if (rec.call.id.empty()) rec.call.id = fmt::format("call_{}_{}", step_no, i + 1);
    }
    const int64_t t_tools = now_ns();
    run_tools(tools, options, step.tools);
    step.tools_ns = now_ns() - t_tools;
    record_turn(step, out.messages);
    step.step_ns = now_ns() - t_step;
  }
  out.end = LoopEnd::max_steps;
  return out;
}

std::string to_json(const LoopResult& r) {
  const auto ms = [](int64_t ns) { return static_cast<double>(ns) / 1e6; };
  json::array steps;
  for (const auto& s : r.steps) {
    const Completion& c = s.completion;
    json::object step{{"model_ms", ms(s.model_ns)},
                      {"tools_ms", ms(s.tools_ns)},
                      {"step_ms", ms(s.step_ns)},
                      {"finish", to_string(c.finish)},
                      {"text", c.text}};
    if (c.figures.ttft_client_ns) step["ttft_ms"] = ms(*c.figures.ttft_client_ns);
    if (c.figures.tokens_in) step["tokens_in"] = *c.figures.tokens_in;
    if (c.figures.tokens_out) step["tokens_out"] = *c.figures.tokens_out;
    if (c.error) step["error"] = c.error.message;
    json::array calls;
    for (const auto& t : s.tools) {
      calls.push_back(json::object{{"id", t.call.id},
                                   {"name", t.call.name},
                                   {"arguments", t.call.arguments_json},
                                   {"outcome", to_string(t.outcome)},
                                   {"result", t.result},
                                   {"ms", ms(t.elapsed_ns)}});
    }
    step["tool_calls"] = std::move(calls);
    steps.push_back(std::move(step));
  }
  json::array messages;
  for (const auto& m : r.messages) {
    json::object o{{"role", m.role}, {"content", m.content}};
    if (!m.tool_calls.empty()) {
      json::array calls;
      for (const auto& tc : m.tool_calls) {
        calls.push_back(
            json::object{{"id", tc.id}, {"name", tc.name}, {"arguments", tc.arguments_json}});
      }
      o["tool_calls"] = std::move(calls);
    }
    if (!m.tool_call_id.empty()) o["tool_call_id"] = m.tool_call_id;
    if (!m.tool_name.empty()) o["tool_name"] = m.tool_name;
    messages.push_back(std::move(o));
  }
  json::object out{{"end", to_string(r.end)},
                   {"answer", r.answer},
                   {"overhead_ms", ms(r.overhead_ns())},
                   {"steps", std::move(steps)},
                   {"messages", std::move(messages)}};
  if (r.error) out["error"] = r.error.message;
  return json::serialize(out);
}

}  // namespace chimera
