// Package testmain lets a test binary set up several servers: each harness's
// Main (testpg.Main, testredis.Main, ...) takes a Runner, and Chain nests them
// so that the tests run inside all of them:
//
//	func TestMain(m *testing.M) {
//		os.Exit(testmain.Chain(m, testpg.Main, testredis.Main, testsqs.Main))
//	}
package testmain

// Runner runs the tests and returns the exit code; *testing.M is one.
type Runner interface{ Run() int }

// RunFunc adapts a function to Runner.
type RunFunc func() int

// Run calls f.
func (f RunFunc) Run() int { return f() }

// Chain runs m inside each of mains, the first outermost, and returns the
// exit code.
func Chain(m Runner, mains ...func(Runner) int) int {
	if len(mains) == 0 {
		return m.Run()
	}
	return mains[0](RunFunc(func() int { return Chain(m, mains[1:]...) }))
}
