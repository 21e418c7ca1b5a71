import torch

from genlab.report import image_grid


def test_image_grid_places_each_image_in_its_cell():
    images = torch.zeros(3, 1, 32, 32)
    images[1] = 1.0
    grid = image_grid(images, ncol=3, pad=2)
    assert grid.size == (3 * 34 + 2, 34 + 2)
    px = grid.load()
    assert px[2 + 34 + 5, 5] == (255, 255, 255)  # the white second image
    assert px[5, 5] == (0, 0, 0) and px[0, 0] == (128, 128, 128)  # black first image, grey padding


def test_small_images_are_enlarged():
    grid = image_grid(torch.rand(4, 3, 8, 8), ncol=2, pad=0)
    assert grid.size == (64, 64)
