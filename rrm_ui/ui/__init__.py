"""The Gradio web app: pages, tabs and the HTML they render."""
