"""FrameAssembler on stamped sequences: jitter, reordering, gaps, duplicates, loops, overflow."""
from __future__ import annotations

import threading

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from xdrcdepth_ros.core.errors import SyncConfigError
from xdrcdepth_ros.core.sync import FrameAssembler, RadarItem, RadarPolicy, SyncConfig, SyncedFrame

MS = 1_000_000
T0 = 1_535_639_721_000 * MS  # a nuScenes-like epoch stamp: large ints must stay exact


def stamps(frame: SyncedFrame) -> list[list[int]]:
    return [[radar.stamp_ns for radar in topic] for topic in frame.radars]


def test_config_defaults_are_the_node_parameter_defaults():
    """One source: SyncConfig() pairs, buffers and waits as the node does with its defaults."""
    from xdrcdepth_ros.core.config import defaults, NodeConfig

    config = SyncConfig()
    node = NodeConfig.from_values({**defaults(), 'radar_topics': ['/radar']}).sync_config()
    assert config.num_radars == 1 and config.slop_ns == 50 * MS
    for name in ('slop_ns', 'buffer_size', 'max_age_ns', 'wait_ns', 'radar_offsets_ns'):
        assert getattr(config, name) == getattr(node, name), name


@pytest.mark.parametrize('kwargs,match', [
    ({'slop_ns': -1}, 'slop_ns and wait_ns must be >= 0'),
    ({'wait_ns': -5}, 'wait_ns must be >= 0'),
    ({'slop_ns': 0.06}, 'slop_ns must be an int'),
    ({'buffer_size': 0}, 'buffer_size must be >= 1'),
    ({'buffer_size': True}, 'buffer_size must be an int'),
    ({'max_age_ns': 10 * MS}, 'max_age_ns .* must be >= slop_ns'),
    ({'clock_jump_ns': 500 * MS}, 'clock_jump_ns .* must be > max_age_ns'),
    ({'radar_offsets_ns': (0, 1.5)}, r'radar_offsets_ns\[1\] must be an int'),
    ({'radar_offsets_ns': (), 'require_radar': True}, 'at least one radar topic'),
    ({'radar_policy': 'closest'}, 'radar_policy must be one of'),
])
def test_bad_config_raises_sync_config_error(kwargs, match):
    with pytest.raises(SyncConfigError, match=match):
        SyncConfig(**kwargs)


def test_radar_index_out_of_range():
    with pytest.raises(IndexError, match='2 radar topics'):
        FrameAssembler(SyncConfig(radar_offsets_ns=(0, 0))).add_radar(2, T0, 'r', 0)


def test_jittered_streams_pair_each_image_with_nearest_sweep():
    """12 Hz camera and 13 Hz radar, both with +-8 ms stamp jitter and random arrival delay:
    every image that is taken gets the sweep nearest to it (within the slop)."""
    rng = np.random.default_rng(3)
    images = [T0 + round(i * 83.3 * MS) + int(rng.integers(-8, 9)) * MS for i in range(60)]
    sweeps = [T0 - 50 * MS + round(i * 76.9 * MS) + int(rng.integers(-8, 9)) * MS
              for i in range(66)]
    events = [(s + int(rng.integers(5, 30)) * MS, 'image', s) for s in images]
    events += [(s + int(rng.integers(5, 30)) * MS, 'radar', s) for s in sweeps]
    assembler = FrameAssembler(SyncConfig(slop_ns=60 * MS, wait_ns=200 * MS))
    out = []
    for now, kind, stamp in sorted(events):
        if kind == 'image':
            assembler.add_image(stamp, f'img{stamp}', now)
        else:
            assembler.add_radar(0, stamp, f'radar{stamp}', now)
        frame = assembler.take(now)
        if frame is not None:
            out.append(frame)
    assert len(out) >= 50
    for frame in out:
        nearest = min(sweeps, key=lambda s: (abs(s - frame.stamp_ns), s))
        assert stamps(frame) == [[nearest]]
        assert frame.radars[0][0].item == f'radar{nearest}'
        assert frame.image == f'img{frame.stamp_ns}'
    stats = assembler.stats
    assert stats.frames_out == len(out) and stats.frames_incomplete == 0


def test_image_waits_for_a_sweep_at_or_after_its_stamp():
    """With one sweep before the image, a later closer sweep may still come: wait for it."""
    assembler = FrameAssembler(SyncConfig())
    assembler.add_radar(0, T0 - 40 * MS, 'early', 0)
    assembler.add_image(T0, 'img', 1 * MS)
    assert assembler.take(2 * MS) is None
    assembler.add_radar(0, T0 + 10 * MS, 'late', 3 * MS)
    frame = assembler.take(4 * MS)
    assert stamps(frame) == [[T0 + 10 * MS]]


def test_reordered_radar_sweep_still_matches():
    """A closer sweep that arrives after a farther one is still preferred."""
    assembler = FrameAssembler(SyncConfig())
    assembler.add_image(T0, 'img', 0)
    assembler.add_radar(0, T0 + 50 * MS, 'far', 1)
    assembler.add_radar(0, T0 + 5 * MS, 'near', 2)
    assert stamps(assembler.take(3)) == [[T0 + 5 * MS]]


def test_reordered_images_release_newest_and_reject_older_late_arrivals():
    """Output stamps only increase: an image older than the last output is stale on arrival."""
    assembler = FrameAssembler(SyncConfig(radar_offsets_ns=()))
    assembler.add_image(T0 + 200 * MS, 'b', 0)
    assembler.add_image(T0 + 100 * MS, 'a', 1)
    assert assembler.take(2).image == 'b'
    assert assembler.stats.dropped_superseded == 1
    assert not assembler.add_image(T0 + 150 * MS, 'late', 3)
    assert assembler.stats.dropped_stale == 1
    assert assembler.take(4) is None


def test_silent_radar_stops_delaying_images_after_max_age():
    """No sweep ever: the first image waits wait_ns (the radar may just be late), and once the
    topic has been silent for max_age_ns of receive time images go out at once."""
    assembler = FrameAssembler(SyncConfig(wait_ns=100 * MS, max_age_ns=500 * MS))
    assembler.add_image(T0, 'img', 0)
    assert assembler.take(99 * MS) is None
    frame = assembler.take(100 * MS)
    assert frame.radars == ((),) and frame.received_ns == 0
    assembler.add_image(T0 + 600 * MS, 'later', 600 * MS)
    assert assembler.take(600 * MS).image == 'later'


def test_first_image_waits_for_a_sweep_delivered_after_it():
    """Transports do not order topics: an image that overtakes its sweep at start-up still
    gets it (offline replay, which sees bag order, builds the same frame)."""
    assembler = FrameAssembler(SyncConfig(wait_ns=100 * MS))
    assembler.add_image(T0, 'img', 0)
    assert assembler.take(1 * MS) is None
    assembler.add_radar(0, T0 + 5 * MS, 'sweep', 2 * MS)
    assert assembler.take(2 * MS).radars == ((RadarItem(T0 + 5 * MS, 'sweep'),),)


def test_jump_forward_to_the_next_scene_waits_for_its_sweep():
    """A bag's next scene starts far later: its first image waits for that scene's sweep
    instead of going out without radar because the topic's newest sweep is old."""
    assembler = FrameAssembler(SyncConfig(wait_ns=100 * MS))
    assembler.add_radar(0, T0 + 8 * MS, 'scene a', 0)
    assembler.add_image(T0 + 5 * MS, 'a', 1 * MS)
    assert assembler.take(1 * MS).image == 'a'
    later = T0 + 38 * 86_400_000 * MS
    assembler.add_image(later, 'b', 50 * MS)
    assert assembler.take(51 * MS) is None
    assembler.add_radar(0, later + 3 * MS, 'scene b', 52 * MS)
    assert assembler.take(52 * MS).radars == ((RadarItem(later + 3 * MS, 'scene b'),),)


def test_missing_sweep_waits_then_releases_incomplete_frame():
    """A live radar with a gap holds the image until wait_ns, then it goes out without radar."""
    config = SyncConfig(wait_ns=100 * MS)
    assembler = FrameAssembler(config)
    assembler.add_radar(0, T0 - 200 * MS, 'old', 0)
    assembler.add_image(T0, 'img', 10 * MS)
    assert assembler.take(109 * MS) is None
    frame = assembler.take(110 * MS)
    assert frame.radars == ((),)
    assert assembler.stats.frames_incomplete == 1


def test_next_timeout_tells_the_worker_when_to_look_again():
    assembler = FrameAssembler(SyncConfig(wait_ns=100 * MS))
    assert assembler.next_timeout_ns() is None
    assembler.add_radar(0, T0 - 50 * MS, 'alive', 0)
    assembler.add_image(T0, 'img', 7 * MS)
    assert assembler.next_timeout_ns() == 107 * MS
    assert assembler.take(107 * MS - 1) is None and assembler.take(107 * MS) is not None


def test_require_radar_drops_images_without_sweeps():
    assembler = FrameAssembler(SyncConfig(require_radar=True, wait_ns=50 * MS))
    assembler.add_radar(0, T0 - 300 * MS, 'old', 0)
    assembler.add_image(T0, 'lonely', 0)
    assert assembler.take(60 * MS) is None
    stats = assembler.stats
    assert stats.dropped_no_radar == 1 and stats.pending_images == 0 and stats.frames_out == 0
    assembler.add_image(T0 + 80 * MS, 'paired', 70 * MS)
    assembler.add_radar(0, T0 + 90 * MS, 'r', 75 * MS)
    assert assembler.take(76 * MS).image == 'paired'


def test_duplicate_stamps_keep_the_first_message():
    assembler = FrameAssembler(SyncConfig())
    assert assembler.add_image(T0, 'first', 0)
    assert not assembler.add_image(T0, 'second', 1)
    assert assembler.add_radar(0, T0, 'radar-first', 2)
    assert not assembler.add_radar(0, T0, 'radar-second', 3)
    frame = assembler.take(4)
    assert frame.image == 'first' and frame.radars[0][0].item == 'radar-first'
    assert not assembler.add_image(T0, 'after-output', 5)
    stats = assembler.stats
    assert (stats.duplicates, stats.radar_duplicates) == (2, 1)


def test_clock_jump_back_resets_buffers():
    """A bag loop restarts stamps: buffers clear, the reset is counted, pairing resumes."""
    assembler = FrameAssembler(SyncConfig(radar_offsets_ns=(0,)))
    for i in range(5):
        assembler.add_image(T0 + i * 100 * MS, f'loop1-{i}', i)
        assembler.add_radar(0, T0 + i * 100 * MS + 5 * MS, 'r', i)
    assembler.take(10)
    assembler.add_image(T0 + 600 * MS, 'pending', 11)  # waits for radar, then the loop restarts
    start = T0 - 20_000 * MS
    assert assembler.add_radar(0, start + 5 * MS, 'loop2-r', 12)
    stats = assembler.stats
    assert stats.clock_resets == 1 and stats.dropped_reset == 1 and stats.pending_images == 0
    assert assembler.add_image(start, 'loop2-img', 13)  # older than the previous output: fine now
    frame = assembler.take(14)
    assert frame.image == 'loop2-img' and stamps(frame) == [[start + 5 * MS]]


def test_stale_messages_are_dropped():
    assembler = FrameAssembler(SyncConfig(max_age_ns=500 * MS))
    assembler.add_image(T0, 'img', 0)
    assert not assembler.add_radar(0, T0 - 600 * MS, 'old', 1)
    assert not assembler.add_image(T0 - 700 * MS, 'older', 2)
    stats = assembler.stats
    assert (stats.radars_stale, stats.dropped_stale, stats.clock_resets) == (1, 1, 0)


def test_multiple_radars_with_offsets_wait_for_every_live_topic():
    """Each topic's offset is added before matching; items keep their original stamps."""
    config = SyncConfig(radar_offsets_ns=(0, 30 * MS), slop_ns=20 * MS)
    assembler = FrameAssembler(config)
    assembler.add_radar(1, T0 - 100 * MS, 'left-old', 0)  # topic 1 is alive
    assembler.add_image(T0, 'img', 1)
    assembler.add_radar(0, T0 + 10 * MS, 'front', 2)
    assert assembler.take(3) is None
    # Radar 1's clock runs 30 ms behind: raw stamp T0 - 25 ms is T0 + 5 ms after correction.
    assembler.add_radar(1, T0 - 25 * MS, 'left', 4)
    frame = assembler.take(5)
    assert stamps(frame) == [[T0 + 10 * MS], [T0 - 25 * MS]]
    assert [radar.item for topic in frame.radars for radar in topic] == ['front', 'left']


def test_radar_policy_all_returns_every_sweep_in_window():
    config = SyncConfig(slop_ns=60 * MS, radar_policy=RadarPolicy.ALL)
    assembler = FrameAssembler(config)
    assembler.add_image(T0, 'img', 0)
    for offset in (-70, -50, 10, 40):
        assembler.add_radar(0, T0 + offset * MS, offset, 1)
    assert assembler.take(2) is None  # no sweep beyond the window yet: more may come
    assembler.add_radar(0, T0 + 61 * MS, 61, 3)
    frame = assembler.take(4)
    assert [radar.item for radar in frame.radars[0]] == [-50, 10, 40]


def test_a_sweep_may_serve_two_images():
    """A camera faster than the radar reuses the nearest sweep."""
    assembler = FrameAssembler(SyncConfig())
    assembler.add_image(T0, 'a', 0)
    assembler.add_radar(0, T0 + 20 * MS, 'r', 1)
    assert stamps(assembler.take(2)) == [[T0 + 20 * MS]]
    assembler.add_image(T0 + 40 * MS, 'b', 3)
    assembler.add_radar(0, T0 + 100 * MS, 'r2', 4)
    assert stamps(assembler.take(5)) == [[T0 + 20 * MS]]


def test_overflow_drops_oldest():
    assembler = FrameAssembler(SyncConfig(buffer_size=3, wait_ns=10**9))
    assembler.add_radar(0, T0 - 100 * MS, 'r-alive', 0)
    for i in range(5):
        assembler.add_image(T0 + i * 10 * MS, i, i)
    for i in range(5):
        assembler.add_radar(0, T0 - 90 * MS + i * MS, i, 10 + i)
    stats = assembler.stats
    assert (stats.pending_images, stats.dropped_overflow, stats.radars_overflow) == (3, 2, 3)
    assert assembler.take(2 * 10**9).image == 4
    assert assembler.stats.dropped_superseded == 2


def test_latest_frame_wins_and_counts_superseded():
    """A slow consumer gets the newest ready frame; ready frames it skipped are counted."""
    assembler = FrameAssembler(SyncConfig())
    for i in range(4):
        assembler.add_image(T0 + i * 80 * MS, i, i)
        assembler.add_radar(0, T0 + i * 80 * MS + 3 * MS, i, i)
    frame = assembler.take(10)
    assert frame.image == 3
    stats = assembler.stats
    assert (stats.frames_out, stats.dropped_superseded, stats.pending_images) == (1, 3, 0)
    assert assembler.take(11) is None


def test_reset_clears_buffers_and_keeps_counters():
    assembler = FrameAssembler(SyncConfig())
    assembler.add_radar(0, T0, 'r', 0)
    assembler.add_image(T0 + 10 * MS, 'img', 0)
    assembler.reset()
    assert assembler.take(10**10) is None
    stats = assembler.stats
    assert (stats.images_in, stats.radars_in, stats.dropped_reset) == (1, 1, 1)
    assembler.add_image(T0 - 10_000 * MS, 'fresh', 1)  # no history: no clock jump detected
    assert assembler.take(2) is None  # the radar is unheard since the reset: wait for it
    assert assembler.take(1 + SyncConfig().wait_ns).image == 'fresh'
    assert assembler.stats.clock_resets == 0


def check_invariants(assembler: FrameAssembler, frames: list[SyncedFrame]) -> None:
    config, stats = assembler.config, assembler.stats
    accounted = (stats.frames_out + stats.dropped_superseded + stats.dropped_no_radar
                 + stats.dropped_stale + stats.dropped_overflow + stats.duplicates
                 + stats.dropped_reset + stats.pending_images)
    assert stats.images_in == accounted
    assert stats.pending_images <= config.buffer_size
    assert stats.frames_out == len(frames)
    for frame in frames:
        for offset, topic in zip(config.radar_offsets_ns, frame.radars):
            assert len(topic) <= 1
            for radar in topic:
                assert abs(radar.stamp_ns + offset - frame.stamp_ns) <= config.slop_ns
        if config.require_radar:
            assert any(frame.radars)


events = st.lists(st.tuples(
    st.sampled_from(['image', 'radar0', 'radar1', 'take']),
    st.integers(-30, 400),  # stamp step (ms) relative to a running clock
    st.integers(0, 60),  # arrival delay (ms)
), max_size=80)


@settings(max_examples=120, deadline=None)
@given(steps=events, require_radar=st.booleans(), jump_at=st.integers(0, 100),
       buffer_size=st.integers(1, 6))
def test_random_streams_keep_counters_consistent(steps, require_radar, jump_at, buffer_size):
    """Whatever arrives, every image is accounted for exactly once, output stamps strictly
    increase after each clock reset, and paired sweeps lie inside the slop."""
    config = SyncConfig(radar_offsets_ns=(0, 15 * MS), buffer_size=buffer_size,
                        require_radar=require_radar, wait_ns=50 * MS)
    assembler = FrameAssembler(config)
    clock, now, frames, last = T0, 0, [], None
    for index, (kind, step, delay) in enumerate(steps):
        clock += step * MS
        if index == jump_at:
            clock -= 30_000 * MS  # a bag loop
        now += delay * MS
        if kind == 'image':
            assembler.add_image(clock, index, now)
        elif kind.startswith('radar'):
            assembler.add_radar(int(kind[-1]), clock, index, now)
        else:
            resets = assembler.stats.clock_resets
            frame = assembler.take(now)
            if frame is not None:
                if last is not None and last[1] == resets:
                    assert frame.stamp_ns > last[0]
                last = (frame.stamp_ns, resets)
                frames.append(frame)
        check_invariants(assembler, frames)


def test_concurrent_producers_and_consumer():
    """Callbacks on two threads and a worker taking frames leave consistent counters."""
    assembler = FrameAssembler(SyncConfig(buffer_size=8, wait_ns=0))
    frames: list[SyncedFrame] = []
    done = threading.Event()

    def images():
        for i in range(400):
            assembler.add_image(T0 + i * 50 * MS, i, i)

    def radars():
        for i in range(400):
            assembler.add_radar(0, T0 + i * 50 * MS + MS, i, i)

    def worker():
        while not done.is_set():
            frame = assembler.take(10**12)
            if frame is not None:
                frames.append(frame)

    threads = [threading.Thread(target=f) for f in (images, radars)]
    consumer = threading.Thread(target=worker)
    consumer.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    consumer.join()
    while (frame := assembler.take(10**12)) is not None:
        frames.append(frame)
    check_invariants(assembler, frames)
    assert [f.stamp_ns for f in frames] == sorted({f.stamp_ns for f in frames})
    assert assembler.stats.images_in == 400 and assembler.stats.pending_images == 0
