// Package nstest runs test code inside a network namespace made with ip
// netns (Linux): sockets opened there stay there, whatever goroutine then
// uses them.
package nstest
