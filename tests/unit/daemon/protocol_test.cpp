// Unit tests of the teemated wire layer over socketpairs and sockets in a
// temporary directory: framing, descriptor passing, every refusal, the
// socket helpers and the field accessors. No sleep is longer than 100 ms.
#include "host/daemon/protocol.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace teemate::protocol {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

int open_fd_count() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  while (struct dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n;
}

std::string le32(uint32_t n) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[static_cast<size_t>(i)] = static_cast<char>(n >> (8 * i));
  return s;
}

// Sends bytes as one sendmsg, with fds attached, bypassing every check.
void raw_send(int sock, const std::string& bytes, const std::vector<int>& fds = {}) {
  struct iovec iov {};
  iov.iov_base = const_cast<char*>(bytes.data());
  iov.iov_len = bytes.size();
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<unsigned char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ASSERT_EQ(sendmsg(sock, &msg, MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size())) << strerror(errno);
}

// A framed message with the given body text.
std::string frame(const std::string& body) { return le32(static_cast<uint32_t>(body.size())) + body; }

bool same_file(int a, int b) {
  struct stat sa {}, sb {};
  return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

class ProtocolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    a_.reset(sv[0]);
    b_.reset(sv[1]);
  }
  // Receives on b_ and expects a refusal with this code and text.
  void expect_refused(Code code, const std::string& text, Kind kind = Kind::kRequest) {
    auto r = recv_message(b_.get(), 1000, kind);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), code) << r.status().message();
    EXPECT_THAT(r.status().message(), HasSubstr(text));
  }
  UniqueFd a_, b_;
};

// ---- Round trips -------------------------------------------------------------

TEST_F(ProtocolTest, RoundTripWithoutFds) {
  json req = make_request("hello", {{"client", "test"}, {"pid", 42}});
  ASSERT_TRUE(send_message(a_.get(), req).ok());
  auto r = recv_message(b_.get(), 1000);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->body, req);
  EXPECT_EQ(r->body["v"], 1);
  EXPECT_EQ(r->body["op"], "hello");
  EXPECT_TRUE(r->fds.empty());
}

TEST_F(ProtocolTest, SendAddsTheVersionWhenMissing) {
  ASSERT_TRUE(send_message(a_.get(), json{{"op", "list"}}).ok());
  auto r = recv_message(b_.get(), 1000);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->body["v"], kVersion);
}

TEST_F(ProtocolTest, RoundTripWithFdsPassesTheSameFiles) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd pipe_r(p[0]), pipe_w(p[1]);
  UniqueFd mem(memfd_create("proto-test", MFD_CLOEXEC));
  ASSERT_TRUE(mem.valid());
  ASSERT_EQ(ftruncate(mem.get(), 4096), 0);

  const int to_send[] = {pipe_w.get(), mem.get()};
  ASSERT_TRUE(send_message(a_.get(), ok_reply({{"base", 4096}}), to_send).ok());
  auto r = recv_reply(b_.get(), 1000);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->fds.size(), 2u);
  const int got_w = r->fds[0].get(), got_mem = r->fds[1].get();
  EXPECT_NE(got_w, pipe_w.get());
  EXPECT_NE(got_mem, mem.get());
  EXPECT_TRUE(same_file(got_w, pipe_w.get()));
  EXPECT_TRUE(same_file(got_mem, mem.get()));
  EXPECT_TRUE(fcntl(got_w, F_GETFD) & FD_CLOEXEC);
  EXPECT_TRUE(fcntl(got_mem, F_GETFD) & FD_CLOEXEC);

  // Write through the received pipe end, read from the original.
  ASSERT_EQ(write(got_w, "ping", 4), 4);
  char buf[8] = {};
  ASSERT_EQ(read(pipe_r.get(), buf, sizeof buf), 4);
  EXPECT_STREQ(buf, "ping");
  // Write through the original memfd, read through the received one.
  ASSERT_EQ(pwrite(mem.get(), "shared", 6, 100), 6);
  char mbuf[8] = {};
  ASSERT_EQ(pread(got_mem, mbuf, 6, 100), 6);
  EXPECT_STREQ(mbuf, "shared");
}

TEST_F(ProtocolTest, BackToBackMessagesKeepTheirOwnFds) {
  int p1[2], p2[2];
  ASSERT_EQ(pipe2(p1, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(p2, O_CLOEXEC), 0);
  UniqueFd p1r(p1[0]), p1w(p1[1]), p2r(p2[0]), p2w(p2[1]);
  const int first[] = {p1r.get()};
  const int second[] = {p2r.get(), p2w.get()};
  ASSERT_TRUE(send_message(a_.get(), make_request("one"), first).ok());
  ASSERT_TRUE(send_message(a_.get(), make_request("two"), second).ok());
  ASSERT_TRUE(send_message(a_.get(), make_request("three")).ok());

  auto m1 = recv_message(b_.get(), 1000);
  auto m2 = recv_message(b_.get(), 1000);
  auto m3 = recv_message(b_.get(), 1000);
  ASSERT_TRUE(m1.ok() && m2.ok() && m3.ok());
  EXPECT_EQ(m1->body["op"], "one");
  ASSERT_EQ(m1->fds.size(), 1u);
  EXPECT_TRUE(same_file(m1->fds[0].get(), p1r.get()));
  EXPECT_EQ(m2->body["op"], "two");
  ASSERT_EQ(m2->fds.size(), 2u);
  EXPECT_TRUE(same_file(m2->fds[0].get(), p2r.get()));
  EXPECT_TRUE(same_file(m2->fds[1].get(), p2w.get()));
  EXPECT_EQ(m3->body["op"], "three");
  EXPECT_TRUE(m3->fds.empty());
}

TEST_F(ProtocolTest, ReceivedFdsAreClosedWithTheMessage) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd pr(p[0]), pw(p[1]);
  const int before = open_fd_count();
  {
    const int fds[] = {pr.get(), pw.get()};
    ASSERT_TRUE(send_message(a_.get(), make_request("x"), fds).ok());
    auto r = recv_message(b_.get(), 1000);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(open_fd_count(), before + 2);
  }
  EXPECT_EQ(open_fd_count(), before);
}

TEST_F(ProtocolTest, LargestMessageIsAcceptedAndOneMoreByteIsNot) {
  const std::string empty_pad = json{{"op", "x"}, {"pad", ""}, {"v", 1}}.dump();
  json body{{"op", "x"}, {"pad", std::string(kMaxMessage - empty_pad.size(), 'a')}, {"v", 1}};
  ASSERT_EQ(body.dump().size(), kMaxMessage);
  Status sent;
  std::thread sender([&] { sent = send_message(a_.get(), body); });
  auto r = recv_message(b_.get(), 5000);
  sender.join();
  ASSERT_TRUE(sent.ok()) << sent.message();
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->body, body);

  body["pad"] = body["pad"].get<std::string>() + "a";
  Status too_big = send_message(a_.get(), body);
  EXPECT_EQ(too_big.code(), Code::kResource);
  EXPECT_EQ(too_big.message(), "message of 65537 bytes exceeds the 65536-byte limit");
}

TEST_F(ProtocolTest, PartialWritesOnANonBlockingSocketAreCompleted) {
  int small = 4096;
  ASSERT_EQ(setsockopt(a_.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  ASSERT_EQ(fcntl(a_.get(), F_SETFL, fcntl(a_.get(), F_GETFL) | O_NONBLOCK), 0);
  ASSERT_EQ(fcntl(b_.get(), F_SETFL, fcntl(b_.get(), F_GETFL) | O_NONBLOCK), 0);
  json body = make_request("big", {{"pad", std::string(60000, 'z')}});
  Status sent;
  std::thread sender([&] { sent = send_message(a_.get(), body, {}, 5000); });
  auto r = recv_message(b_.get(), 5000);
  sender.join();
  ASSERT_TRUE(sent.ok()) << sent.message();
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->body, body);
}

TEST_F(ProtocolTest, SendTimesOutWhenThePeerDoesNotRead) {
  int small = 4096;
  ASSERT_EQ(setsockopt(a_.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  ASSERT_EQ(setsockopt(b_.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
  json body = make_request("big", {{"pad", std::string(60000, 'z')}});
  Status s = send_message(a_.get(), body, {}, 50);
  EXPECT_EQ(s.code(), Code::kResource) << s.message();
  EXPECT_THAT(s.message(), HasSubstr("timed out after 50 ms"));
}

TEST_F(ProtocolTest, SendToAClosedPeerIsAnErrorNotSigpipe) {
  b_.reset();
  Status s = send_message(a_.get(), make_request("hello"));
  EXPECT_EQ(s.code(), Code::kIo);
  EXPECT_THAT(s.message(), HasSubstr("Broken pipe"));
}

TEST_F(ProtocolTest, SendRefusesBadArguments) {
  EXPECT_EQ(send_message(a_.get(), json::array({1, 2})).code(), Code::kInvalidArgument);
  const int negative[] = {-1};
  EXPECT_EQ(send_message(a_.get(), make_request("x"), negative).code(), Code::kInvalidArgument);
  // Nothing was written.
  auto r = recv_message(b_.get(), 0);
  EXPECT_EQ(r.status().code(), Code::kResource);
}

// ---- Descriptor limits ----------------------------------------------------------

TEST_F(ProtocolTest, SendRefusesMoreThanEightFds) {
  std::vector<int> nine(9, a_.get());
  Status s = send_message(a_.get(), make_request("x"), nine);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("at most 8 file descriptors, got 9"));
  auto r = recv_message(b_.get(), 0);
  EXPECT_EQ(r.status().code(), Code::kResource);  // nothing was sent
}

TEST_F(ProtocolTest, EightFdsAreAccepted) {
  std::vector<int> eight(8, a_.get());
  ASSERT_TRUE(send_message(a_.get(), make_request("x"), eight).ok());
  auto r = recv_message(b_.get(), 1000);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->fds.size(), 8u);
}

TEST_F(ProtocolTest, RecvRefusesMoreThanEightFdsAndClosesThem) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd pr(p[0]), pw(p[1]);
  const int before = open_fd_count();
  raw_send(a_.get(), frame(R"({"v":1,"op":"x"})"), std::vector<int>(9, pr.get()));
  expect_refused(Code::kResource, "message carries 9 file descriptors; the limit is 8");
  EXPECT_EQ(open_fd_count(), before);
}

TEST_F(ProtocolTest, RecvRefusesFdsThatArriveWithTheBody) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd pr(p[0]), pw(p[1]);
  const int before = open_fd_count();
  const std::string body = R"({"v":1,"op":"x"})";
  raw_send(a_.get(), le32(static_cast<uint32_t>(body.size())));
  raw_send(a_.get(), body, {pr.get()});
  expect_refused(Code::kCorrupt, "must travel with the length prefix");
  EXPECT_EQ(open_fd_count(), before);
}

TEST_F(ProtocolTest, FdsOfARefusedMessageAreClosed) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd pr(p[0]), pw(p[1]);
  const int before = open_fd_count();
  raw_send(a_.get(), frame(R"({"v":2,"op":"x"})"), {pr.get(), pw.get()});
  expect_refused(Code::kUnsupported, "protocol version 2 not supported");
  EXPECT_EQ(open_fd_count(), before);
}

// ---- Framing refusals ----------------------------------------------------------

TEST_F(ProtocolTest, OversizedLengthIsRefusedWithoutReadingTheBody) {
  raw_send(a_.get(), le32(kMaxMessage + 1));
  auto r = recv_message(b_.get(), 1000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kResource);
  EXPECT_EQ(r.status().message(), "message of 65537 bytes exceeds the 65536-byte limit");

  raw_send(a_.get(), le32(0xffffffffu));
  expect_refused(Code::kResource, "message of 4294967295 bytes exceeds the 65536-byte limit");
}

TEST_F(ProtocolTest, ZeroLengthIsRefused) {
  raw_send(a_.get(), le32(0));
  expect_refused(Code::kCorrupt, "length 0");
}

TEST_F(ProtocolTest, TruncatedBodyIsRefused) {
  raw_send(a_.get(), le32(100) + std::string(50, ' '));
  a_.reset();
  auto r = recv_message(b_.get(), 1000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorrupt);
  EXPECT_EQ(r.status().message(), "connection closed in the middle of a message");
}

TEST_F(ProtocolTest, TruncatedLengthPrefixIsRefused) {
  raw_send(a_.get(), std::string("\x10\x00", 2));
  a_.reset();
  expect_refused(Code::kCorrupt, "connection closed in the middle of a message");
}

TEST_F(ProtocolTest, CleanEofIsNotFound) {
  a_.reset();
  auto r = recv_message(b_.get(), 1000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_EQ(r.status().message(), "peer closed the connection");
}

TEST_F(ProtocolTest, MessageSplitAcrossWritesIsReassembled) {
  const std::string bytes = frame(R"({"v":1,"op":"slow"})");
  std::thread writer([&] {
    for (char c : bytes) {
      raw_send(a_.get(), std::string(1, c));
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  auto r = recv_message(b_.get(), 5000);
  writer.join();
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->body["op"], "slow");
}

TEST_F(ProtocolTest, TimeoutBeforeAnyByte) {
  const auto start = std::chrono::steady_clock::now();
  auto r = recv_message(b_.get(), 50);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kResource);
  EXPECT_EQ(r.status().message(), "timed out after 50 ms waiting for a message");
  EXPECT_GE(ms, 45);
  EXPECT_LT(ms, 1000);
}

TEST_F(ProtocolTest, TimeoutInTheMiddleOfAMessage) {
  raw_send(a_.get(), le32(20) + "{\"v\":1");
  auto r = recv_message(b_.get(), 50);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kResource);
  EXPECT_EQ(r.status().message(), "timed out after 50 ms in the middle of a message");
}

// ---- Body refusals -------------------------------------------------------------

TEST_F(ProtocolTest, GarbageJsonIsRefused) {
  raw_send(a_.get(), frame("{not json"));
  expect_refused(Code::kCorrupt, "is not valid JSON");
}

TEST_F(ProtocolTest, InvalidUtf8IsRefused) {
  raw_send(a_.get(), frame("{\"v\":1,\"op\":\"\xff\xfe\"}"));
  expect_refused(Code::kCorrupt, "is not valid JSON");
}

TEST_F(ProtocolTest, TrailingBytesAfterTheObjectAreRefused) {
  raw_send(a_.get(), frame(R"({"v":1,"op":"x"} {"v":1,"op":"y"})"));
  expect_refused(Code::kCorrupt, "is not valid JSON");
}

TEST_F(ProtocolTest, NonObjectJsonIsRefused) {
  raw_send(a_.get(), frame("[1,2,3]"));
  expect_refused(Code::kCorrupt, "must be a JSON object, got array");
  raw_send(a_.get(), frame("\"hello\""));
  expect_refused(Code::kCorrupt, "must be a JSON object, got string");
}

TEST_F(ProtocolTest, DeepNestingIsRefused) {
  std::string deep = R"({"v":1,"op":"x","a":)" + std::string(40, '[') + std::string(40, ']') + "}";
  raw_send(a_.get(), frame(deep));
  expect_refused(Code::kCorrupt, "nests 41 levels deep; the limit is 32");
  // Brackets inside strings do not count.
  std::string in_string = R"({"v":1,"op":"x","a":")" + std::string(100, '[') + R"(\"]"})";
  raw_send(a_.get(), frame(in_string));
  auto r = recv_message(b_.get(), 1000);
  ASSERT_TRUE(r.ok()) << r.status().message();
}

TEST_F(ProtocolTest, WrongVersionIsRefused) {
  raw_send(a_.get(), frame(R"({"v":7,"op":"hello"})"));
  auto r = recv_message(b_.get(), 1000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnsupported);
  EXPECT_EQ(r.status().message(), "protocol version 7 not supported; this daemon speaks 1");
}

TEST_F(ProtocolTest, MissingOrMistypedVersionIsRefused) {
  raw_send(a_.get(), frame(R"({"op":"hello"})"));
  expect_refused(Code::kCorrupt, "no protocol version field 'v'");
  raw_send(a_.get(), frame(R"({"v":"1","op":"hello"})"));
  expect_refused(Code::kCorrupt, "must be an integer, got string");
  raw_send(a_.get(), frame(R"({"v":1.0,"op":"hello"})"));
  expect_refused(Code::kCorrupt, "must be an integer, got number");
  raw_send(a_.get(), frame(R"({"v":-1,"op":"hello"})"));
  expect_refused(Code::kUnsupported, "protocol version -1 not supported");
}

TEST_F(ProtocolTest, MissingOpIsRefused) {
  raw_send(a_.get(), frame(R"({"v":1})"));
  expect_refused(Code::kCorrupt, "no 'op' string");
  raw_send(a_.get(), frame(R"({"v":1,"op":3})"));
  expect_refused(Code::kCorrupt, "'op' must be a string, got number");
  raw_send(a_.get(), frame(R"({"v":1,"op":""})"));
  expect_refused(Code::kCorrupt, "'op' is empty");
}

TEST_F(ProtocolTest, RepliesAreValidatedAsReplies) {
  ASSERT_TRUE(send_message(a_.get(), ok_reply({{"enclaves", json::array()}})).ok());
  auto r = recv_reply(b_.get(), 1000);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->body["ok"], true);
  EXPECT_EQ(r->body["op"], kReplyOp);

  raw_send(a_.get(), frame(R"({"v":1,"op":"reply"})"));
  expect_refused(Code::kCorrupt, "no 'ok'", Kind::kReply);
  raw_send(a_.get(), frame(R"({"v":1,"op":"reply","ok":false})"));
  expect_refused(Code::kCorrupt, "no 'error' string", Kind::kReply);
  raw_send(a_.get(), frame(R"({"v":9,"op":"reply","ok":true})"));
  expect_refused(Code::kUnsupported, "this client speaks 1", Kind::kReply);
}

TEST(ProtocolFuzzTest, MutatedMessagesAreReceivedOrRefusedNeverCrash) {
  // Deterministic mutations of a valid framed message: each is received or
  // refused with a Status, and no descriptor leaks either way.
  const std::string good = frame(R"({"v":1,"op":"attach","tcs":[1,2],"mrenclave":"00ff"})");
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  auto next = [&seed] {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return seed;
  };
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd pr(p[0]), pw(p[1]);
  const int before = open_fd_count();
  int accepted = 0;
  for (int i = 0; i < 500; ++i) {
    std::string bytes = good;
    const int edits = 1 + static_cast<int>(next() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = next() % bytes.size();
      switch (next() % 3) {
        case 0: bytes[at] = static_cast<char>(next()); break;
        case 1: bytes.erase(at, 1); break;
        default: bytes.insert(at, 1, "{}[]\",:0\\"[next() % 9]); break;
      }
    }
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    UniqueFd a(sv[0]), b(sv[1]);
    raw_send(a.get(), bytes, {pr.get()});
    a.reset();
    auto r = recv_message(b.get(), 1000);
    if (r.ok()) {
      ++accepted;
      EXPECT_TRUE(validate_request(r->body).ok());
    } else {
      EXPECT_FALSE(r.status().message().empty());
    }
  }
  EXPECT_EQ(open_fd_count(), before);
  EXPECT_LT(accepted, 500);
}

// ---- Replies and call() --------------------------------------------------------

TEST(ReplyTest, HelpersBuildValidReplies) {
  json ok = ok_reply({{"enclave", 3}, {"ok", false}, {"v", 9}});
  EXPECT_TRUE(validate_reply(ok).ok());
  EXPECT_EQ(ok["ok"], true);
  EXPECT_EQ(ok["v"], kVersion);
  EXPECT_EQ(ok["enclave"], 3);
  EXPECT_TRUE(validate_reply(ok_reply()).ok());

  json err = error_reply("no enclave 5");
  EXPECT_TRUE(validate_reply(err).ok());
  EXPECT_EQ(err["ok"], false);
  EXPECT_EQ(err["error"], "no enclave 5");

  json coded = error_reply(Status(Code::kBusy, "no free TCS"));
  EXPECT_EQ(coded["code"], "busy");
  EXPECT_EQ(code_from_wire_name("busy"), Code::kBusy);
  EXPECT_EQ(code_from_wire_name("bogus"), Code::kInternal);
  for (int c = 0; c <= static_cast<int>(Code::kInternal); ++c) {
    EXPECT_EQ(code_from_wire_name(code_wire_name(static_cast<Code>(c))), static_cast<Code>(c));
  }

  json req = make_request("attach", {{"tcs", 2}});
  EXPECT_TRUE(validate_request(req).ok());
  EXPECT_FALSE(validate_reply(req).ok());
}

TEST_F(ProtocolTest, CallReturnsTheReplyOrItsError) {
  std::thread server([&] {
    for (int i = 0; i < 2; ++i) {
      auto req = recv_message(b_.get(), 5000);
      if (!req.ok()) return;
      if (req->body["op"] == "list") {
        (void)send_message(b_.get(), ok_reply({{"enclaves", json::array()}}));
      } else {
        (void)send_message(b_.get(), error_reply(Status(Code::kNotFound, "no enclave 7")));
      }
    }
  });
  auto good = call(a_.get(), make_request("list"), {}, 5000);
  auto bad = call(a_.get(), make_request("attach", {{"enclave", 7}}), {}, 5000);
  server.join();
  ASSERT_TRUE(good.ok()) << good.status().message();
  EXPECT_TRUE(good->body["enclaves"].is_array());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kNotFound);
  EXPECT_EQ(bad.status().message(), "no enclave 7");
}

// ---- Field accessors -----------------------------------------------------------

TEST(FieldTest, GetString) {
  json b = {{"image", "/srv/a.tme"}, {"n", 3}, {"nul", std::string("a\0b", 3)}};
  auto ok = get_string(b, "image");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, "/srv/a.tme");
  EXPECT_EQ(get_string(b, "missing").status().message(), "field 'missing' is missing");
  EXPECT_EQ(get_string(b, "n").status().message(), "field 'n' must be a string");
  EXPECT_EQ(get_string(b, "n").status().code(), Code::kInvalidArgument);
  EXPECT_THAT(get_string(b, "nul").status().message(), HasSubstr("NUL"));
  EXPECT_FALSE(get_string(json::array(), "image").ok());
}

TEST(FieldTest, GetU64) {
  json b = json::parse(R"({"tcs":4,"max":1024,"big":1025,"neg":-1,"f":1.5,"s":"4","huge":18446744073709551615})");
  auto ok = get_u64(b, "tcs", 1024);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 4u);
  EXPECT_EQ(*get_u64(b, "max", 1024), 1024u);
  EXPECT_EQ(*get_u64(b, "huge", UINT64_MAX), UINT64_MAX);
  for (const char* key : {"big", "neg", "f", "s"}) {
    auto r = get_u64(b, key, 1024);
    ASSERT_FALSE(r.ok()) << key;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_EQ(r.status().message(), std::string("field '") + key + "' must be an unsigned integer <= 1024");
  }
  EXPECT_EQ(get_u64(b, "nope", 1).status().message(), "field 'nope' is missing");
  // Values built in code (signed integers) work too.
  EXPECT_EQ(*get_u64(json{{"tcs", 3}}, "tcs", 10), 3u);
}

TEST(FieldTest, GetBoolArrayAndHex) {
  json b = json::parse(R"({"yes":true,"one":1,"idx":[0,3,7],"badidx":[0,9],"mixed":[1,"2"],
                          "mr":"00ff10AB","short":"00ff","nothex":"zzff10ab"})");
  EXPECT_TRUE(*get_bool(b, "yes"));
  EXPECT_EQ(get_bool(b, "one").status().message(), "field 'one' must be true or false");

  auto idx = get_u64_array(b, "idx", 7, 4);
  ASSERT_TRUE(idx.ok());
  EXPECT_EQ(*idx, (std::vector<uint64_t>{0, 3, 7}));
  EXPECT_EQ(get_u64_array(b, "badidx", 7, 4).status().message(),
            "field 'badidx' must be an array of at most 4 unsigned integers <= 7");
  EXPECT_FALSE(get_u64_array(b, "mixed", 7, 4).ok());
  EXPECT_FALSE(get_u64_array(b, "idx", 7, 2).ok());

  auto mr = get_hex(b, "mr", 4);
  ASSERT_TRUE(mr.ok());
  EXPECT_EQ(*mr, (std::vector<uint8_t>{0x00, 0xff, 0x10, 0xab}));
  EXPECT_EQ(get_hex(b, "short", 4).status().message(), "field 'short' must be a hex string of 8 digits");
  EXPECT_FALSE(get_hex(b, "nothex", 4).ok());
}

// ---- Sockets -------------------------------------------------------------------

TEST_F(ProtocolTest, PeerCredentialsAreOurs) {
  auto c = peer_credentials(b_.get());
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->pid, getpid());
  EXPECT_EQ(c->uid, getuid());
  EXPECT_EQ(c->gid, getgid());
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd pr(p[0]), pw(p[1]);
  EXPECT_EQ(peer_credentials(pr.get()).status().code(), Code::kIo);
}

class UnixSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/teemate-proto-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/teemated.sock";
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string dir_, path_;
};

TEST_F(UnixSocketTest, ListenAcceptsConnectionsWithMode0660) {
  auto l = listen_unix(path_);
  ASSERT_TRUE(l.ok()) << l.status().message();
  struct stat st {};
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_TRUE(fcntl(l->get(), F_GETFD) & FD_CLOEXEC);

  auto c = connect_unix(path_);
  ASSERT_TRUE(c.ok()) << c.status().message();
  UniqueFd server(accept4(l->get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(server.valid());
  auto cred = peer_credentials(server.get());
  ASSERT_TRUE(cred.ok());
  EXPECT_EQ(cred->pid, getpid());
  EXPECT_EQ(cred->uid, getuid());

  ASSERT_TRUE(send_message(c->get(), make_request("hello")).ok());
  auto m = recv_message(server.get(), 1000);
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->body["op"], "hello");
}

TEST_F(UnixSocketTest, ListenHonoursAnotherMode) {
  auto l = listen_unix(path_, 0600);
  ASSERT_TRUE(l.ok()) << l.status().message();
  struct stat st {};
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(UnixSocketTest, ListenRefusesWhenADaemonIsLive) {
  auto first = listen_unix(path_);
  ASSERT_TRUE(first.ok()) << first.status().message();
  auto second = listen_unix(path_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kBusy);
  EXPECT_EQ(second.status().message(), "another teemated is already listening on " + path_);
  // The first listener is untouched.
  auto c = connect_unix(path_);
  EXPECT_TRUE(c.ok()) << c.status().message();
}

TEST_F(UnixSocketTest, ListenReplacesAStaleSocketFile) {
  {
    // A socket file nobody listens on (a daemon that died without cleanup).
    UniqueFd s(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    ASSERT_EQ(bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  }
  struct stat st {};
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  EXPECT_EQ(connect_unix(path_).status().code(), Code::kNotFound);

  auto l = listen_unix(path_);
  ASSERT_TRUE(l.ok()) << l.status().message();
  EXPECT_TRUE(connect_unix(path_).ok());
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
}

TEST_F(UnixSocketTest, ListenRefusesToReplaceARegularFile) {
  {
    UniqueFd f(open(path_.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    ASSERT_TRUE(f.valid());
  }
  auto l = listen_unix(path_);
  ASSERT_FALSE(l.ok());
  EXPECT_THAT(l.status().message(), HasSubstr("exists and is not a socket"));
  struct stat st {};
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
}

TEST_F(UnixSocketTest, PathTooLongIsRefused) {
  auto l = listen_unix(dir_ + "/" + std::string(200, 's'));
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(l.status().message(), HasSubstr("the limit is 107"));
}

TEST_F(UnixSocketTest, ConnectToAMissingDaemonSaysSo) {
  auto c = connect_unix(path_);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kNotFound);
  EXPECT_EQ(c.status().message(),
            "cannot connect to teemated at " + path_ + ": No such file or directory (is the daemon running?)");
}

// ---- UniqueFd ------------------------------------------------------------------

TEST(UniqueFdTest, OwnsAndReleases) {
  const int before = open_fd_count();
  {
    UniqueFd a(dup(0));
    ASSERT_TRUE(a.valid());
    UniqueFd b(std::move(a));
    EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
    EXPECT_TRUE(b.valid());
    UniqueFd c;
    c = std::move(b);
    EXPECT_EQ(open_fd_count(), before + 1);
  }
  EXPECT_EQ(open_fd_count(), before);
  UniqueFd d(dup(0));
  int raw = d.release();
  EXPECT_FALSE(d.valid());
  EXPECT_EQ(open_fd_count(), before + 1);
  close(raw);
}

}  // namespace
}  // namespace teemate::protocol
