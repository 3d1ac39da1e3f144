"""xdrcdepth_ros: dense metric depth from one camera and automotive radar (XD-RCDepth) for ROS 2.

The core modules (geometry, conversions, sync, pipeline, engine, visualize, evaluate) import neither
rclpy nor torch, so a vehicle runs the node with numpy, OpenCV, ONNX Runtime and ROS alone.
"""

__version__ = '0.1.0'
__all__ = ['__version__']
