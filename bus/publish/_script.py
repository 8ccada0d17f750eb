"""The idempotent publish's Lua script and the packed heads that call it (EVALSHA, or EVAL when
the server lost the script)."""

from __future__ import annotations

import hashlib

from ..wire import bulk

__all__ = ["EVALSHA_HEAD", "EVAL_HEAD", "IDEMPOTENT_PUBLISH_SCRIPT", "IDMP_PRODUCER"]

#: Producer id used with ``XADD ... IDMP <pid> <iid>`` on servers that support it (Redis >= 8.6).
IDMP_PRODUCER = b"psa-event-bus"

#: KEYS[1] = marker key; KEYS[2..] = streams, in write order.
#: ARGV[1] = what the marker keeps (the event id, or ``event_id,id_per_stream...`` when the
#: copies carry their own ids); ARGV[2] = window (s); ARGV[3] = n XADD options, then the
#: options (``IDMP pid iid`` where supported, then ``MAXLEN ~ n``); then per stream: the number
#: of field/value arguments followed by them.
#: Returns ``{1, entry_id...}`` when written, ``{0, first_event_id}`` for a repeat. Every
#: stream's type is checked before the first write, so a WRONGTYPE key writes nothing.
IDEMPOTENT_PUBLISH_SCRIPT = """
local first = redis.call('GET', KEYS[1])
if first then return {0, first} end
for i = 2, #KEYS do
  local t = redis.call('TYPE', KEYS[i])
  t = t['ok'] or t
  if t ~= 'stream' and t ~= 'none' then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. t .. ', not a stream; nothing was written')
  end
end
local nopts = tonumber(ARGV[3])
local pos = 4 + nopts
local out = {1}
for i = 2, #KEYS do
  local n = tonumber(ARGV[pos])
  local args = {'XADD', KEYS[i]}
  for j = 4, 3 + nopts do args[#args + 1] = ARGV[j] end
  args[#args + 1] = '*'
  for j = pos + 1, pos + n do args[#args + 1] = ARGV[j] end
  pos = pos + n + 1
  out[#out + 1] = redis.call(unpack(args))
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return out
"""
SCRIPT_SHA = hashlib.sha1(IDEMPOTENT_PUBLISH_SCRIPT.encode()).hexdigest().encode()
EVALSHA_HEAD = bulk(b"EVALSHA") + bulk(SCRIPT_SHA)
EVAL_HEAD = bulk(b"EVAL") + bulk(IDEMPOTENT_PUBLISH_SCRIPT.encode())
