"""Diagnostics bookkeeping of the node: counters, per-period rates/latencies and the level."""
from __future__ import annotations

import pytest

from xdrcdepth_ros.ros.stats import DiagnosticLevel, NodeStats

SYNC = {'dropped_superseded': 3, 'frames_out': 2}


def test_a_healthy_period_is_ok_and_reports_means_maxima_and_counters():
    stats = NodeStats('CPUExecutionProvider')
    for _ in range(4):
        stats.count('image_received')
    stats.frame_done({'engine': 10.0, 'preprocess': 2.0, 'total': 14.0})
    stats.frame_done({'engine': 20.0, 'preprocess': 4.0, 'total': 26.0})
    level, message, values = stats.report(SYNC, new_period=True)
    assert level == DiagnosticLevel.OK and message.startswith('publishing at')
    assert values['provider'] == 'CPUExecutionProvider'
    assert (values['engine_ms'], values['engine_ms_max']) == ('15.00', '20.00')
    assert values['decode_ms'] == 'nan'  # never timed in this period
    assert values['published'] == '2' and values['image_received'] == '4'
    assert values['dropped_superseded'] == '3'
    assert float(values['rate_hz']) > 0


def test_levels_follow_what_happened_in_the_period():
    stats = NodeStats('cpu')
    assert stats.report({}, new_period=True)[:2] == (DiagnosticLevel.WARN, 'no input images')
    stats.count('image_received')
    level, message, _ = stats.report({}, new_period=True)
    assert level == DiagnosticLevel.WARN and 'no depth output yet' in message
    stats.count('image_received')
    stats.count('skipped_no_camera_info')
    level, message, _ = stats.report({}, new_period=True)
    assert (level, message) == (DiagnosticLevel.ERROR, 'no depth output: skipped_no_camera_info')
    stats.count('image_received')
    stats.count('radar_unused_bad_cloud')
    stats.frame_done({'engine': 1.0})
    level, message, values = stats.report({}, new_period=True)
    assert (level, message) == (DiagnosticLevel.WARN, 'degraded: radar_unused_bad_cloud')
    assert values['skipped_no_camera_info'] == '1'  # totals survive the period


def test_report_without_new_period_keeps_the_window():
    stats = NodeStats('cpu')
    stats.count('image_received')
    stats.frame_done({'engine': 5.0})
    first = stats.report({}, new_period=False)[2]
    second = stats.report({}, new_period=True)[2]
    assert first['engine_ms'] == second['engine_ms'] == '5.00'
    assert stats.report({}, new_period=True)[2]['engine_ms'] == 'nan'


def test_levels_are_the_diagnostic_msgs_byte_values():
    """The node publishes ``bytes([level])``; each level must be the message's constant."""
    msg = pytest.importorskip('diagnostic_msgs.msg', reason='needs the ROS message packages')
    for level in DiagnosticLevel:
        assert bytes([level]) == getattr(msg.DiagnosticStatus, level.name)
