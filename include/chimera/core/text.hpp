// Small text helpers every module shares: UTF-8 checks, ASCII trimming and lower-casing.
//
// UTF-8 is checked as RFC 3629 defines it: no overlong forms, no surrogates, nothing above
// U+10FFFF, no sequence cut short. invalid_utf8_at() runs over whole ingested files (hundreds of
// MB): it skips ASCII eight bytes at a time.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace chimera::text {

// Length of the UTF-8 sequence a lead byte starts (1-4), or 0 when the byte cannot start one
// (a continuation byte, 0xC0, 0xC1, 0xF5-0xFF).
constexpr std::size_t utf8_sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// Whether `b` may follow the lead byte `lead` as its first continuation byte: excludes
// overlong forms, surrogates and code points past U+10FFFF.
constexpr bool utf8_valid_second(unsigned char lead, unsigned char b) {
  if ((b & 0xC0) != 0x80) return false;
  if (lead == 0xE0) return b >= 0xA0;
  if (lead == 0xED) return b <= 0x9F;
  if (lead == 0xF0) return b >= 0x90;
  if (lead == 0xF4) return b <= 0x8F;
  return true;
}

// Offset of the first byte that does not belong to well-formed UTF-8, or npos.
std::size_t invalid_utf8_at(std::string_view s);

inline bool valid_utf8(std::string_view s) {
  return invalid_utf8_at(s) == std::string_view::npos;
}

// Characters (code points) in UTF-8 text: the bytes that are not continuation bytes.
std::size_t utf8_length(std::string_view s);

// The longest prefix of `s` of at most `max_bytes` bytes that does not end inside a character:
// text cut to a byte budget must stay UTF-8, or the JSON that carries it is refused (a server
// answers 500 to a prompt with half a character in it).
constexpr std::string_view utf8_prefix(std::string_view s, std::size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  std::size_t n = max_bytes;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

// ASCII whitespace as std::isspace sees it in the C locale: space, \t, \n, \v, \f, \r.
constexpr bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// `s` without the whitespace at either end. Inline: ingestion calls it for every cell.
constexpr std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// ASCII lower case; other bytes (UTF-8 included) unchanged.
constexpr char to_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}
std::string to_lower(std::string_view s);

}  // namespace chimera::text
