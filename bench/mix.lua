-- A realistic request mix for wrk against a kinema library layout: the
-- master playlist, the media playlists, then every init file and segment of
-- every rendition, in the order a player asks for them (playlists once per
-- pass, each rendition's init before its segments).
--
-- Usage: wrk -s bench/mix.lua URL -- VIDEO_ID RENDITION:SEGMENTS [...]
--   e.g. wrk -t1 -c64 -d5s -s bench/mix.lua http://127.0.0.1:8080 -- bench g1/v360:20 g1/v720:20
--   (a rendition is named by its path in the video: generation, then id)
--
-- Each wrk thread walks the list round-robin from its own offset, so the
-- connections spread over all files instead of hammering the first one.

local paths = {}
local counter = 0

function init(args)
  local video = args[1]
  local base = "/v/" .. video .. "/"
  table.insert(paths, base .. "master.m3u8")
  for i = 2, #args do
    local rendition, segments = string.match(args[i], "([^:]+):(%d+)")
    table.insert(paths, base .. rendition .. "/index.m3u8")
    table.insert(paths, base .. rendition .. "/init.mp4")
    for n = 1, tonumber(segments) do
      table.insert(paths, base .. rendition .. "/" .. n .. ".m4s")
    end
  end
  counter = math.random(#paths) - 1
end

function request()
  counter = counter + 1
  return wrk.format("GET", paths[(counter % #paths) + 1])
end
