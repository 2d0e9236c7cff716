"""transferkit: transfer learning on images."""
