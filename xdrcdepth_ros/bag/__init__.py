"""rosbag2 tools without a ROS runtime: nuScenes → bag, offline replay, bag evaluation, a player.

``convert`` (nuScenes → rosbag2), ``replay`` (the node's pipeline over a bag), ``evaluate``
(depth against projected LiDAR) and ``io`` need only ``rosbags``; ``player`` and ``recorder``
import rclpy when used. Import the submodules directly; this package exports nothing itself so
that importing one tool does not load the others.
"""
