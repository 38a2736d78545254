// Agents that use tools: the loop of model call, tool calls, tool results, model call.
//
// Register tools (a name, a JSON schema of the parameters, a function), then run_tool_loop()
// calls the model with them, runs the tools it asks for (several at once when it asks for
// several, each with a timeout), sends the results back under the ids of the calls, and stops on
// a final answer (a reply without tool calls) or after `max_steps` model calls. Nothing a tool
// does ends the loop: an exception, a timeout, an unknown tool name or arguments that are not a
// JSON object become a tool result that says so ("error: ..."), which the model reads.
//
// Every step is recorded: the model call's Completion (TTFT, tokens, ...), each tool's outcome,
// result and time, and the step's own time; LoopResult::overhead_ns() is what the loop itself
// cost (docs/tools.md measures it).
//
// Threading: run_tool_loop blocks the calling thread, which must not be a Runtime thread. Tools
// run on threads of their own; a tool that outlives its timeout keeps running on its thread
// until it returns (C++ cannot stop it), and its late result is dropped.
//
// Example:
//   chimera::Toolbox tools;
//   tools.add({.name = "get_weather",
//              .description = "The weather in a city",
//              .parameters_json = R"({"type":"object","properties":{"city":{"type":"string"}},
//                                     "required":["city"]})",
//              .run = [](const std::string& args) { return std::string(R"({"temp_c": 18})"); }});
//   chimera::Request req;
//   req.messages = {{.role = "user", .content = "Weather in Paris?"}};
//   chimera::LoopResult r = chimera::run_tool_loop(*backend, req, tools, {.max_steps = 4});
//   if (r.end == chimera::LoopEnd::answer) std::puts(r.answer.c_str());
#pragma once

#include <chimera/backends/backend.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace chimera {

// A function the model may call.
struct Tool {
  std::string name;  // letters, digits, '_' and '-', as OpenAI requires (1-64 characters)
  std::string description;
  std::string parameters_json = R"({"type":"object","properties":{}})";  // a JSON schema
  // Runs the tool with the arguments the model wrote (a JSON object, as text) and returns the
  // result the model reads. May throw: the exception's message goes back as the result.
  std::function<std::string(const std::string& arguments_json)> run;
};

class Toolbox {
 public:
  // Adds a tool. Throws std::invalid_argument, naming the tool, for a bad or duplicate name,
  // parameters that are not a JSON object, or no function.
  Toolbox& add(Tool tool);
  const Tool* find(std::string_view name) const;
  const std::vector<Tool>& tools() const { return tools_; }
  // The tools as a JSON array of definitions, as OpenAI and Ollama take them
  // (Request::tools_json).
  std::string definitions_json() const;

 private:
  std::vector<Tool> tools_;
};

struct LoopOptions {
  int max_steps = 8;                 // model calls at most (1-1000)
  int64_t tool_timeout_ms = 30'000;  // each tool call (1 ms - 1 day)
  int max_parallel = 8;              // tool calls of one step that run at once (1-256)
};

enum class ToolOutcome {
  ok,             // the tool returned
  error,          // the tool threw
  timeout,        // the tool did not return within tool_timeout_ms
  unknown_tool,   // the model named a tool the toolbox does not have
  bad_arguments,  // the arguments are not a JSON object
};
const char* to_string(ToolOutcome o);

struct ToolRecord {
  ToolCall call;  // as the model asked; the id is ours ("call_<step>_<n>") when it gave none
  ToolOutcome outcome = ToolOutcome::ok;
  std::string result;      // what went back to the model
  int64_t elapsed_ns = 0;  // from its start to its result (or to the timeout)
};

struct LoopStep {
  Completion completion;  // the model call, with its figures
  std::vector<ToolRecord> tools;
  int64_t model_ns = 0;  // the model call, from start() to its Completion
  int64_t tools_ns = 0;  // the step's tool calls, wall time (they run at once)
  int64_t step_ns = 0;   // the whole step: the model, the tools and the loop's own work
};

enum class LoopEnd {
  answer,       // the model replied without tool calls
  max_steps,    // max_steps model calls made, the last one still asking for tools (run)
  model_error,  // a model call failed (LoopResult::error)
  cancelled,    // the token callback returned false
};
const char* to_string(LoopEnd e);

struct LoopResult {
  LoopEnd end = LoopEnd::answer;
  std::string answer;  // the last reply's text
  // The whole conversation: the request's messages, then each reply (with its tool calls) and
  // the tool results that answered it.
  std::vector<Message> messages;
  std::vector<LoopStep> steps;
  Error error;  // for model_error and cancelled
  // The loop's own time over all steps: step time less model and tool time.
  int64_t overhead_ns() const;
};

// Runs the loop (see the header comment). `request` gives the model, the options and the
// conversation so far; its tools_json, when set, is what the model is told about (the toolbox
// runs the calls; a tool it lacks is an unknown tool), otherwise the toolbox's definitions.
// Its tool_choice applies to the first step; "required" becomes "auto" after it, so that the
// model can answer. `on_token` sees every step's stream. Never throws for what a tool or a
// model does; throws std::invalid_argument for options out of range.
LoopResult run_tool_loop(Backend& backend, Request request, const Toolbox& tools,
                         const LoopOptions& options = {}, const TokenCallback& on_token = {});

// The loop's record as one JSON object (the C ABI's and `chimeraforge agent --json`'s):
//   {"end", "answer", "error"?, "overhead_ms", "steps": [{"model_ms", "tools_ms", "step_ms",
//    "ttft_ms"?, "tokens_in"?, "tokens_out"?, "finish", "text", "tool_calls": [{"id", "name",
//    "arguments", "outcome", "result", "ms"}]}], "messages": [{"role", "content",
//    "tool_calls"?: [{"id", "name", "arguments"}], "tool_call_id"?, "tool_name"?}]}
// Times in milliseconds; "arguments" is the JSON text the model wrote.
std::string to_json(const LoopResult& result);

}  // namespace chimera
