"""The delivery checker: proves from what clients saw that no acknowledged message was
lost or delivered twice, except where the server said so with `recovered:false`.

A `Recorder` collects, from any number of threads:
- each acknowledged publish: channel, position, and a key naming its data;
- per subscriber (a name; one channel each), every event in the order the subscriber
  saw it: `subscribed` (a subscribe or resume answer: its position, `recovered`, and
  whether it was a resume), `message` (position, key), `reconnect` (the connection
  lost or the server asked for a reconnect).

`check(recorder, tops)` walks each subscriber's events (tops: each channel's final
position, read from the server when the traffic has stopped; by default the highest
acknowledged position of the channel's last epoch) and counts:
- delivered: messages received;
- duplicates: a position received a second time by the same subscriber;
- silent_gaps: positions skipped with no `recovered:false` to say so: a SEQ that does
  not follow the previous one, an epoch that changes unannounced, or a subscriber that
  ends short of its channel's final position;
- missing_acked: acknowledged positions inside what a subscriber was owed that it never
  got (the silent gaps that were acknowledged publishes);
- recovered_false: answers that said `recovered:false` (positions they skip are excused:
  the client was told to refetch); with the epochs: how many came with a new epoch
  (the bus lost the channel) and how many within the same one (history too short);
- resumed: resumes answered `recovered:true` after a reconnect (a gap repaired by the
  client's resume), and reconnects;
- wrong_data: a message whose data is not what was acknowledged at its position, and
  reused_positions: a position acknowledged for two different publishes (a bus that
  went back in time without a new epoch).
`Report.ok` is true when silent_gaps, missing_acked, duplicates, wrong_data and
reused_positions are all 0. `problems` holds the first few of each, readable.
"""
import threading
import time
from collections import defaultdict


def parse(position):
    epoch, _, seq = position.rpartition(".")
    return epoch, int(seq)


def absent(p):
    """A channel that did not exist when read (docs/protocol.md): its first message,
    SEQ 1 of whatever epoch, follows it."""
    return p[0].startswith("z") and p[1] == 0


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.acked = []  # (time, channel, position, key)
        self.failed = defaultdict(int)  # publish failures by reason ("503", "timeout", ...)
        self.events = defaultdict(list)  # subscriber -> [(time, kind, channel, fields...)]
        self.channel_of = {}

    def ack(self, channel, position, key):
        with self.lock:
            self.acked.append((time.monotonic(), channel, position, key))

    def publish_failed(self, reason):
        with self.lock:
            self.failed[reason] += 1

    def subscribed(self, sub, channel, position, recovered, resumed):
        self._event(sub, channel, ("subscribed", position, bool(recovered), bool(resumed)))

    def message(self, sub, channel, position, key):
        self._event(sub, channel, ("message", position, key))

    def reconnect(self, sub, channel, why):
        self._event(sub, channel, ("reconnect", why))

    def _event(self, sub, channel, ev):
        with self.lock:
            self.channel_of[sub] = channel
            self.events[sub].append((time.monotonic(),) + ev)


class Report:
    FIELDS = ("published", "delivered", "duplicates", "silent_gaps", "missing_acked", "recovered_false",
              "recovered_false_new_epoch", "recovered_false_same_epoch", "resumed", "reconnects", "wrong_data",
              "reused_positions")

    def __init__(self):
        for f in self.FIELDS:
            setattr(self, f, 0)
        self.problems = []
        self.reconnect_reasons = defaultdict(int)  # "sse@a: EOFError" -> count
        self.recovered_false_at = []  # monotonic times of each recovered:false, for attribution

    @property
    def ok(self):
        return not (self.silent_gaps or self.missing_acked or self.duplicates or self.wrong_data or self.reused_positions)

    def problem(self, text):
        if len(self.problems) < 40:
            self.problems.append(text)

    def counts(self):
        return {f: getattr(self, f) for f in self.FIELDS}

    def __str__(self):
        head = ", ".join(f"{f} {getattr(self, f)}" for f in self.FIELDS)
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.reconnect_reasons.items()))
        return head + (f"\n  reconnects: {reasons}" if reasons else "") + "".join("\n  " + p for p in self.problems)


def default_tops(recorder):
    """Each channel's final position as far as the acknowledged publishes tell: the
    highest SEQ of the epoch of its last acknowledged publish."""
    last = {}
    for _, channel, position, _ in recorder.acked:
        epoch, seq = parse(position)
        if channel not in last or last[channel][0] != epoch or seq > last[channel][1]:
            last[channel] = (epoch, seq)
    return {c: f"{e}.{s}" for c, (e, s) in last.items()}


def check(recorder, tops=None):
    with recorder.lock:
        acked = list(recorder.acked)
        events = {s: list(e) for s, e in recorder.events.items()}
        channel_of = dict(recorder.channel_of)
    tops = dict(default_tops(recorder), **(tops or {}))
    r = Report()
    r.published = len(acked)
    # What each position was acknowledged for, per channel.
    acked_at = defaultdict(dict)  # channel -> (epoch, seq) -> key
    for _, channel, position, key in acked:
        p = parse(position)
        if p in acked_at[channel] and acked_at[channel][p] != key:
            r.reused_positions += 1
            r.problem(f"{channel} {position} acknowledged for {acked_at[channel][p]} and for {key}")
        acked_at[channel][p] = key
    for sub, evs in sorted(events.items()):
        _walk(r, sub, channel_of[sub], evs, acked_at[channel_of[sub]], tops.get(channel_of[sub]))
    return r


def _walk(r, sub, channel, evs, acked_at, top):
    cur = None  # (epoch, seq): the last position this subscriber is at
    seen = set()
    owed = []  # segments (epoch, lo exclusive, hi inclusive) of positions it was owed

    def close_segment():
        if cur is not None and segment_lo is not None:
            owed.append((cur[0], segment_lo, cur[1]))

    segment_lo = None
    for ev in evs:
        t, kind = ev[0], ev[1]
        if kind == "reconnect":
            r.reconnects += 1
            r.reconnect_reasons[f"{sub.split('@')[0]}: {ev[2]}"] += 1
        elif kind == "subscribed":
            position, recovered, resumed = parse(ev[2]), ev[3], ev[4]
            if cur is None:  # the first answer: owed everything after it
                cur, segment_lo = position, position[1]
                if resumed and not recovered:
                    r.recovered_false += 1
            elif recovered:
                if resumed:
                    r.resumed += 1
                else:  # a fresh subscribe with no position: it starts again from here
                    close_segment()
                    cur, segment_lo = position, position[1]
            else:
                r.recovered_false += 1
                r.recovered_false_at.append(t)
                if position[0] != cur[0]:
                    r.recovered_false_new_epoch += 1
                else:
                    r.recovered_false_same_epoch += 1
                close_segment()
                cur, segment_lo = position, position[1]
        elif kind == "message":
            position, key = parse(ev[2]), ev[3]
            r.delivered += 1
            if cur is not None and absent(cur) and position[0] != cur[0]:
                cur = (position[0], 0)
            if position in seen:
                r.duplicates += 1
                r.problem(f"{sub} ({channel}): {ev[2]} a second time")
                continue
            seen.add(position)
            if position in acked_at and acked_at[position] != key:
                r.wrong_data += 1
                r.problem(f"{sub} ({channel}): {ev[2]} carried {key}, acknowledged for {acked_at[position]}")
            if cur is None:
                r.silent_gaps += 1
                r.problem(f"{sub} ({channel}): {ev[2]} before any subscribe answer")
                cur, segment_lo = position, position[1] - 1
            elif position[0] != cur[0]:
                r.silent_gaps += position[1]
                r.problem(f"{sub} ({channel}): epoch {cur[0]} -> {position[0]} with no recovered:false "
                          f"(at {cur[1]} -> {position[1]})")
                close_segment()
                cur, segment_lo = position, 0
            elif position[1] <= cur[1]:
                r.silent_gaps += 1
                r.problem(f"{sub} ({channel}): {ev[2]} after {cur[0]}.{cur[1]} (out of order)")
            else:
                if position[1] > cur[1] + 1:
                    r.silent_gaps += position[1] - cur[1] - 1
                    r.problem(f"{sub} ({channel}): {cur[0]}.{cur[1]} then {ev[2]}: "
                              f"{position[1] - cur[1] - 1} skipped with no recovered:false")
                cur = position
    if cur is None:
        return
    if top is not None:
        top = parse(top)
        if absent(cur) and top[0] != cur[0]:
            cur = (top[0], 0)
        if top[0] != cur[0]:
            r.silent_gaps += top[1]
            r.problem(f"{sub} ({channel}): ended in epoch {cur[0]} at {cur[1]}, the channel is at "
                      f"{top[0]}.{top[1]}, never told")
            close_segment()
            cur, segment_lo = top, 0
            owed.append((top[0], 0, top[1]))
            segment_lo = None
        elif top[1] > cur[1]:
            r.silent_gaps += top[1] - cur[1]
            r.problem(f"{sub} ({channel}): ended at {cur[1]}, the channel is at {top[1]}")
            cur = top
    close_segment()
    for epoch, lo, hi in owed:
        for (e, s) in acked_at:
            if e == epoch and lo < s <= hi and (e, s) not in seen:
                r.missing_acked += 1
                r.problem(f"{sub} ({channel}): acknowledged {e}.{s} never delivered")


def caught_up(recorder, tops=None):
    """True when every subscriber's last message is its channel's final position (what
    to wait for, once publishing stopped, before check())."""
    tops = dict(default_tops(recorder), **(tops or {}))
    with recorder.lock:
        for sub, evs in recorder.events.items():
            top = tops.get(recorder.channel_of[sub])
            if top is None:
                continue
            last = next((e for e in reversed(evs) if e[1] in ("message", "subscribed")), None)
            if last is None or parse(last[2]) != parse(top):
                return False
    return True
