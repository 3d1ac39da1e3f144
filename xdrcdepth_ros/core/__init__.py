"""The ROS-free, torch-free core: conversions, sync, geometry, the pipeline and its engine.

Everything a vehicle needs besides rclpy: numpy, OpenCV and onnxruntime only. Nothing here
imports from the layers above (ros, bag, model, train, commands); docs/architecture.md is the map.
"""
