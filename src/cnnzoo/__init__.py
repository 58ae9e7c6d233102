"""cnnzoo: the classic convolutional networks, faithful and tested."""
