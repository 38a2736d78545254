// What each actor's prompt holds (private header): the transcript as chat messages, their
// tokens, and the window of the newest lines that fits the actor's num_ctx.
#pragma once

#include "banter/actor.hpp"
#include "banter/model_text.hpp"
#include "banter/placement.hpp"

#include <chimera/banter/scene.hpp>

#include <array>
#include <cstddef>
#include <string>
#include <vector>

namespace chimera::banter::detail {

// Reads the scene's actors, lanes and transcript, which it does not own. Every call is made
// with the scene mutex held: it guards the transcript and the token counts kept here.
class PromptWindow {
 public:
  PromptWindow(const std::vector<Actor>& actors, const ActorPlacement& placement,
               const std::vector<LineRecord>& transcript)
      : actors_(actors), placement_(placement), transcript_(transcript) {}

  // The actor's system prompt and transcript entries [from, upto) as its model sees them.
  std::vector<ChatMessage> messages(const Actor& a, std::size_t from, std::size_t upto) const;
  // Tokens of those messages: exact with a local vocabulary, else an estimate.
  int count_tokens(const Actor& a, std::size_t from, std::size_t upto) const;
  // Moves the actor's window start so that its prompt up to `upto` fits num_ctx; false with
  // `error` when even the newest line does not fit.
  bool fit(Actor& a, bool prefill, std::size_t upto, std::string& error);

 private:
  int line_tokens(const Actor& a, std::size_t i);

  const std::vector<Actor>& actors_;
  const ActorPlacement& placement_;
  const std::vector<LineRecord>& transcript_;
  // Per lane, the tokens of each transcript line as a message of the lane's model: as seen by
  // others ("Name: text") and by its speaker (the raw text); -1 until first needed.
  std::vector<std::vector<std::array<int, 2>>> line_tokens_;
};

}  // namespace chimera::banter::detail
