-- wrk script for bench/web.py: POST each path of a file (pre-signed one-click URLs) once.
-- Usage: wrk -tN -s web_tokens.lua URL -- PATHS_FILE BODY N
-- Thread k of N takes lines k, k+N, k+2N, ...: no token is sent twice within a run.

local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local stride = tonumber(args[3])
  paths = {}
  local index = 0
  for line in io.lines(args[1]) do
    if index % stride == id then
      paths[#paths + 1] = line
    end
    index = index + 1
  end
  body = args[2]
  headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
  next_path = 1
end

function request()
  local path = paths[next_path]
  if path == nil then
    -- Out of tokens: repeat the last one (idempotent); bench/web.py warns when this happens.
    path = paths[#paths]
  else
    next_path = next_path + 1
  end
  return wrk.format("POST", path, headers, body)
end
