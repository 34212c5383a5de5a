// The Durable Streams server conformance suite, run against the server at DS_URL, whose
// long-poll timeout is DS_LONG_POLL_MS. cmd/sluice/durable_test.go starts sluice serve
// and runs it; `npx vitest run` from a consumer finds no tests in the package itself.
import { runConformanceTests } from "@durable-streams/server-conformance-tests"
runConformanceTests({ baseUrl: process.env.DS_URL, longPollTimeoutMs: Number(process.env.DS_LONG_POLL_MS ?? 500) })
