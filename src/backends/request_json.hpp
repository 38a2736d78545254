// Small helpers for building request bodies (private header).
#pragma once

#include <chimera/core/request.hpp>

#include <boost/json/object.hpp>

#include <string>
#include <string_view>

namespace chimera::backends {

// Parses `text` as JSON and stores it under `key`. With allow_json_word, the bare word "json"
// is stored as the string "json" (Ollama's "any JSON" format). On failure sets `error`.
bool add_json_field(boost::json::object& body, std::string_view key, const std::string& text,
                    std::string_view what, std::string& error, bool allow_json_word);

// Request::tool_choice is auto, required or none, and required comes with tools. Sets `error`.
bool check_tool_choice(const Request& r, std::string& error);

}  // namespace chimera::backends
