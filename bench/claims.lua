-- wrk script: POST /api/v1/eggs with a distinct shopper per request.
-- TOKEN: a QR token valid for the run; RUN: a prefix keeping shoppers distinct across runs.
local token = os.getenv("TOKEN")
local run = os.getenv("RUN") or "r"
local threads = 0
local counter = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function request()
  counter = counter + 1
  local body = '{"token":"' .. token .. '","shopper":"' .. run .. '-' .. tid .. '-' .. counter .. '"}'
  return wrk.format("POST", "/api/v1/eggs", { ["Content-Type"] = "application/json" }, body)
end
