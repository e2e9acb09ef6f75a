-- Prepended to every feed script (after the flag line and SUFFIXES, set by redis.py).
-- The feeds a call works on are declared in KEYS (one server: nothing to do here), or on a
-- Redis Cluster given undeclared, in ARGV: ARGV[1] is their number n, ARGV[2..n+1] the
-- feeds, then the script's own arguments. A cluster node refuses declared keys of different
-- slots; undeclared ones may span every slot it serves (allow-cross-slot-keys), which makes a
-- fanout chunk one call per node instead of one per slot. Each feed's probe keys (base ..
-- each of SUFFIXES, see redis.py) are asked about first, before anything is written: a key
-- this node does not serve (its slot moved, or is moving and the key is not here) fails the
-- call there, with nothing changed, and the caller retries it on the slot's owner.
local KEYS, ARGV = KEYS, ARGV
if #KEYS == 0 then
  local n = tonumber(ARGV[1])
  local feeds, rest = {}, {}
  for i = 2, n + 1 do feeds[#feeds + 1] = ARGV[i] end
  for i = n + 2, #ARGV do rest[#rest + 1] = ARGV[i] end
  if #SUFFIXES > 0 then
    for _, feed in ipairs(feeds) do
      local probe = {}
      for j, suffix in ipairs(SUFFIXES) do probe[j] = feed .. suffix end
      redis.call('EXISTS', unpack(probe))
    end
  end
  KEYS, ARGV = feeds, rest
end
