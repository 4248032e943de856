"""What a fault means for the customer and the technician, and the evidence that proves it."""
