"""The ROS 2 layer: the rclpy node (``node``), its diagnostics bookkeeping (``stats``) and the
documents rendered from its parameter table (``param_docs``). Only ``node`` imports rclpy.
"""
