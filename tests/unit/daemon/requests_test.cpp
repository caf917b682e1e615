// Unit tests of the typed request layer: every operation decodes its fields
// with their types and ranges, and every wrong-typed, out-of-range or
// missing field (issue 11, defect 1: "new": "yes" aborted the daemon) is an
// error value naming the operation and the field, never an exception.
#include "host/daemon/requests.h"

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace teemate::protocol {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

json req(const std::string& op, json fields = json::object()) {
  fields["v"] = 1;
  fields["op"] = op;
  return fields;
}

TEST(Requests, DecodesEachOperation) {
  auto h = decode_request(req("hello", {{"client", "ctr"}}));
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(std::get<HelloRequest>(*h).client, "ctr");

  auto l = decode_request(req("load", {{"image", "/x/a.tme"}, {"new", true}}));
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(std::get<LoadRequest>(*l).image, "/x/a.tme");
  EXPECT_TRUE(std::get<LoadRequest>(*l).fresh);

  auto a = decode_request(req("attach", {{"enclave", 3}, {"tcs", 2}}));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*std::get<AttachRequest>(*a).which.id, 3u);
  EXPECT_EQ(std::get<AttachRequest>(*a).tcs, 2u);

  auto m = decode_request(req("attach", {{"mrenclave", std::string(64, 'A')}}));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*std::get<AttachRequest>(*m).which.mrenclave)[0], 0xaa);
  auto by_load = decode_request(req("attach", {{"loaded", true}, {"tcs", 3}}));
  ASSERT_TRUE(by_load.ok()) << by_load.status().to_string();
  EXPECT_TRUE(std::get<AttachRequest>(*by_load).which.loaded);
  EXPECT_FALSE(std::get<AttachRequest>(*by_load).which.id);
  EXPECT_EQ(std::get<AttachRequest>(*by_load).tcs, 3u);
  EXPECT_EQ(std::get<AttachRequest>(*m).tcs, 1u);

  auto r = decode_request(req("release", {{"tcs", {1, 2}}}));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(std::get<ReleaseRequest>(*r).tcs, (std::vector<uint32_t>{1, 2}));
  EXPECT_TRUE(std::get<ReleaseRequest>(*r).which.empty());

  EXPECT_TRUE(std::holds_alternative<ListRequest>(*decode_request(req("list"))));
  EXPECT_TRUE(std::holds_alternative<DetachRequest>(*decode_request(req("detach"))));
  EXPECT_TRUE(std::holds_alternative<LeaseRequest>(*decode_request(req("lease", {{"tcs", 3}}))));
}

TEST(Requests, UnknownFieldsAreIgnored) {
  EXPECT_TRUE(decode_request(req("list", {{"future", {1, 2, 3}}})).ok());
}

struct Bad {
  json body;
  const char* says;
};

TEST(Requests, WrongTypesAndRangesAreErrorsNamingTheField) {
  const Bad cases[] = {
      {req("load", {{"image", "/a.tme"}, {"new", "yes"}}), "field 'new' must be true or false"},
      {req("load", {{"image", 7}}), "field 'image' must be a string"},
      {req("load", {{"image", "rel/a.tme"}}), "must be an absolute path"},
      {req("load", {{"image", "/" + std::string(5000, 'a')}}), "longer than 4096"},
      {req("load"), "field 'image' is missing"},
      {req("hello", {{"client", 5}}), "field 'client' must be a string"},
      {req("hello", {{"client", std::string(65, 'c')}}), "at most 64 bytes"},
      {req("attach", {{"enclave", -1}}), "field 'enclave' must be an unsigned integer"},
      {req("attach", {{"enclave", 1.5}}), "field 'enclave' must be an unsigned integer"},
      {req("attach", {{"enclave", "1"}}), "field 'enclave' must be an unsigned integer"},
      {req("attach", {{"enclave", 0}}), "enclave id (1 or more)"},
      {req("attach", {{"enclave", 1ull << 40}}), "<= 4294967295"},
      {req("attach"), "field 'enclave', 'mrenclave' or 'loaded' is missing"},
      {req("attach", {{"enclave", 1}, {"mrenclave", std::string(64, '0')}}), "give one of"},
      {req("attach", {{"enclave", 1}, {"loaded", true}}), "give one of"},
      {req("attach", {{"loaded", false}}), "field 'loaded' can only be true"},
      {req("attach", {{"loaded", 1}}), "field 'loaded'"},
      {req("attach", {{"mrenclave", "zz"}}), "mrenclave"},
      {req("attach", {{"enclave", 1}, {"tcs", 5000}}), "field 'tcs' must be an unsigned integer <= 1024"},
      {req("attach", {{"enclave", 1}, {"tcs", nullptr}}), "field 'tcs'"},
      {req("lease", {{"tcs", json::array()}}), "field 'tcs'"},
      {req("release", {{"tcs", 3}}), "field 'tcs' must be an array"},
      {req("release", {{"tcs", {1, "2"}}}), "field 'tcs' must be an array"},
      {req("release"), "field 'tcs' is missing"},
      {req("detach", {{"enclave", {{"x", 1}}}}), "field 'enclave'"},
  };
  for (const Bad& c : cases) {
    auto r = decode_request(c.body);
    ASSERT_FALSE(r.ok()) << c.body.dump();
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << c.body.dump();
    EXPECT_THAT(r.status().message(), HasSubstr(c.says)) << c.body.dump();
    EXPECT_THAT(r.status().message(), HasSubstr(request_op(c.body) + ": ")) << c.body.dump();
  }
}

TEST(Requests, UnknownOperationAndNonObjects) {
  auto r = decode_request(req("format-disk"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnsupported);
  EXPECT_THAT(r.status().message(), HasSubstr("unknown op 'format-disk'"));
  EXPECT_FALSE(decode_request(json::array()).ok());
  EXPECT_FALSE(decode_request(json("load")).ok());
  EXPECT_EQ(request_op(json{{"op", 3}}), "");
}

}  // namespace
}  // namespace teemate::protocol
