"""mvgd_ros: the ROS 2 adapter around mvgd_core (subscriptions, TF, conditioning set, publishers)."""
