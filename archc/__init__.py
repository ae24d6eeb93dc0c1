"""archc."""
